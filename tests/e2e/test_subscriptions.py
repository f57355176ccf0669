"""Subscriptions resume from the last sequence a client saw: every event once, no gap."""

from __future__ import annotations

import asyncio

from uuid_utils.compat import uuid7

from commands.bus import CommandContext
from domain.task import SubmitTask
from schemas.envelope import Actor
from tests.e2e.client import subscribe
from tests.e2e.conftest import Gateway

EVENTS = """
subscription ($after: Int) {
  events(filter: {aggregateType: "task", eventType: "TaskSubmitted"}, afterSequence: $after) {
    sequence eventType aggregateId
  }
}
"""


async def test_a_subscriber_that_disconnects_and_resumes_gets_every_event_exactly_once(
    gateway: Gateway,
) -> None:
    bus = gateway.platform.commands.bus
    start = await gateway.platform.store.last_sequence()
    owner = uuid7()
    actor = Actor(id=str(owner), kind="user")
    appended: list[int] = []

    async def keep_submitting() -> None:
        for _ in range(40):
            task = SubmitTask(task_id=uuid7(), owner_id=owner, task_type="code.explain")
            result = await bus.execute(task, CommandContext(command_id=str(uuid7()), actor=actor))
            appended.append(result.sequence)
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(keep_submitting())
    seen: list[int] = []
    token = gateway.admin.access_token
    async with subscribe(gateway.url, EVENTS, {"after": start}, token) as first_connection:
        while len(seen) < 12:
            seen.append((await first_connection.next())["data"]["events"]["sequence"])
    # Gone mid-stream (the socket closed while events keep coming); come back after the last.
    await asyncio.sleep(0.1)
    async with subscribe(gateway.url, EVENTS, {"after": seen[-1]}, token) as second_connection:
        while len(seen) < 40:
            seen.append((await second_connection.next())["data"]["events"]["sequence"])
    await writer

    assert seen == sorted(appended)
    assert len(set(seen)) == 40


async def test_a_subscription_without_a_position_starts_at_new_events(gateway: Gateway) -> None:
    bus = gateway.platform.commands.bus
    owner = uuid7()
    actor = Actor(id=str(owner), kind="user")
    old = SubmitTask(task_id=uuid7(), owner_id=owner, task_type="code.explain")
    await bus.execute(old, CommandContext(command_id=str(uuid7()), actor=actor))
    async with subscribe(gateway.url, EVENTS, {}, gateway.admin.access_token) as connection:
        await asyncio.sleep(0.3)  # the subscription is set up before the new event lands
        new = SubmitTask(task_id=uuid7(), owner_id=owner, task_type="code.explain")
        await bus.execute(new, CommandContext(command_id=str(uuid7()), actor=actor))
        event = (await connection.next())["data"]["events"]
    assert event["aggregateId"] == str(new.task_id)
