"""A user registers, signs in, submits a task, follows it, and audits it."""

from __future__ import annotations

import asyncio
from uuid import UUID

from uuid_utils.compat import uuid7

from commands.bus import CommandContext
from domain.task import AssignTask, CompleteTask, StartTask
from schemas.envelope import Actor
from tests.e2e.client import subscribe
from tests.e2e.conftest import Gateway

SUBMIT = """
mutation ($type: TaskType!, $cmid: String) {
  submitTask(input: {taskType: $type, priority: 2, payload: {prompt: "fizzbuzz"}},
             clientMutationId: $cmid, reason: "I need fizzbuzz", waitForProjection: true) {
    aggregateId version sequence duplicate projected
  }
}
"""
TASK_UPDATED = """
subscription ($id: ID!) { taskUpdated(id: $id) { sequence eventType version status } }
"""
MY_TASKS = "{ tasks(first: 50) { items { id status ownerId } } }"
HISTORY = """
query ($id: ID!) { history(aggregateType: "task", id: $id) {
  version eventType actor { id kind } reason commandId correlationId } }
"""


async def test_a_user_submits_follows_and_audits_a_task(gateway: Gateway) -> None:
    client = gateway.client
    alice = await client.sign_up()
    submitted = (await client.data(SUBMIT, {"type": "test.generate"}, alice.access_token))[
        "submitTask"
    ]
    assert submitted["version"] == 1
    assert submitted["projected"] is True
    task_id = submitted["aggregateId"]

    mine = (await client.data(MY_TASKS, token=alice.access_token))["tasks"]["items"]
    assert [t["id"] for t in mine] == [task_id]
    assert mine[0]["status"] == "PENDING"

    agent = Actor(id=str(uuid7()), kind="agent")
    bus = gateway.platform.commands.bus
    async with subscribe(gateway.url, TASK_UPDATED, {"id": task_id}, alice.access_token) as sub:
        first = await sub.next()
        assert first["data"]["taskUpdated"]["status"] == "PENDING"
        for command in (
            AssignTask(task_id=UUID(task_id), agent_id=UUID(agent.id)),
            StartTask(task_id=UUID(task_id)),
            CompleteTask(task_id=UUID(task_id), result={"code": "print(1)"}),
        ):
            done = await bus.execute(command, CommandContext(command_id=str(uuid7()), actor=agent))
        statuses = [(await sub.next())["data"]["taskUpdated"]["status"] for _ in range(3)]
    assert statuses == ["ASSIGNED", "RUNNING", "COMPLETED"]
    # Read-your-writes: with the sequence of the last change, the read model shows it.
    fresh = await client.data(
        "query ($id: ID!, $s: Int) { task(id: $id, minSequence: $s) { status result } }",
        {"id": task_id, "s": done.sequence},
        alice.access_token,
    )
    assert fresh["task"] == {"status": "COMPLETED", "result": {"code": "print(1)"}}

    history = (await client.data(HISTORY, {"id": task_id}, alice.access_token))["history"]
    assert history[0]["eventType"] == "TaskSubmitted"
    assert history[0]["actor"] == {"id": alice.user_id, "kind": "user"}
    assert history[0]["reason"] == "I need fizzbuzz"
    assert [h["eventType"] for h in history[1:]] == ["TaskAssigned", "TaskStarted", "TaskCompleted"]
    assert all(h["actor"]["id"] == agent.id for h in history[1:])


async def test_one_client_mutation_id_sent_twice_creates_one_task(gateway: Gateway) -> None:
    client = gateway.client
    bob = await client.sign_up()
    first, second = await asyncio.gather(
        client.data(SUBMIT, {"type": "test.review", "cmid": "order-42"}, bob.access_token),
        client.data(SUBMIT, {"type": "test.review", "cmid": "order-42"}, bob.access_token),
    )
    again = await client.data(SUBMIT, {"type": "test.review", "cmid": "order-42"}, bob.access_token)
    ids = {r["submitTask"]["aggregateId"] for r in (first, second, again)}
    assert len(ids) == 1
    assert again["submitTask"]["duplicate"] is True
    mine = (await client.data(MY_TASKS, token=bob.access_token))["tasks"]["items"]
    assert len(mine) == 1
