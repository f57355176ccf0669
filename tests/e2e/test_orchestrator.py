"""The orchestrator on the real servers: a workflow is planned into subtasks run by agents and
completes with their results, also when its orchestrator is killed mid-workflow."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any
from uuid import UUID

import nats.js.errors
import ollama
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandBus, CommandContext
from commands.loading import load_aggregate
from domain.agent import AgentKind
from domain.aggregates import TASK
from domain.task import (
    AssignTask,
    CancelTask,
    CompleteTask,
    FailTask,
    StartTask,
    SubmitTask,
    Task,
    TaskError,
    TaskStatus,
)
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM
from handlers.consumers import Delivered
from handlers.model_port import ModelPort
from handlers.orchestrator import CAPABILITIES, CHILDREN, Orchestrator
from handlers.presence import AgentCard, register
from handlers.task_work import TaskWorker
from handlers.workflow_plan import Plan, Step, child_task_id
from runtime.agents import AgentOptions, run_agents
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import EventEnvelope
from tests.e2e.conftest import Gateway, running_gateway, until_done, until_online
from tests.servers import crash, doomed_agent

SUBMIT = """
mutation ($payload: JSON) {
  submitTask(input: {taskType: "workflow", payload: $payload}) { aggregateId sequence }
}
"""
GOAL = "Write a Python function that reverses a string, then explain how it works."
QUICK: dict[str, Any] = {"heartbeat_seconds": 0.5, "coordinator_sweep_seconds": 0.5}
WORKERS = ("task-coordinator", "code-assistant", "document-assistant")


async def _events_of(store: EventStore, task_id: UUID) -> list[EventEnvelope]:
    return [r.envelope async for r in store.aggregate_events("task", task_id)]


async def _children_submitted(store: EventStore, parent_id: UUID) -> Counter[UUID]:
    """How many times each child of the parent was submitted, over the whole log."""
    submitted: Counter[UUID] = Counter()
    async for recorded in store.read(subject_filter="sutazai.events.task.*.TaskSubmitted"):
        if recorded.envelope.data.get("parent_id") == str(parent_id):
            submitted[recorded.envelope.aggregate_id] += 1
    return submitted


async def _assert_each_child_once_and_completed(
    store: EventStore, parent_id: UUID, result: Any
) -> None:
    steps = result["steps"]
    assert len(steps) >= 2, result
    expected = [child_task_id(parent_id, index) for index in range(len(steps))]
    assert [UUID(step["task_id"]) for step in steps] == expected
    submitted = await _children_submitted(store, parent_id)
    assert submitted == Counter(expected), submitted  # every child once, no other child
    parent = await _task(store, parent_id)
    assert list(parent.subtask_ids) == expected  # attached once each, in plan order
    for step, child_id in zip(steps, expected, strict=True):
        assert step["status"] == "completed", step
        child = await _task(store, child_id)
        assert child.parent_id == parent_id
        assert child.owner_id == parent.owner_id
        assert child.status is TaskStatus.COMPLETED
        assert child.agent_id is not None  # done by an agent, not by the orchestrator
        assert step["result"] == child.result
        types = [e.event_type for e in await _events_of(store, child_id)]
        assert types.count("TaskSubmitted") == 1, types
        assert types.count("TaskCompleted") == 1, types


async def test_a_workflow_is_planned_into_subtasks_each_run_by_an_agent_then_completed(
    settings: Settings, stack: Stack
) -> None:
    async with (
        running_gateway(settings, stack, **QUICK) as gateway,
        run_agents(gateway.platform, AgentOptions(replica=f"w{uuid4().hex[:6]}")),
    ):
        user = await gateway.client.sign_up()
        submitted = await gateway.client.data(
            SUBMIT, {"payload": {"prompt": GOAL}}, user.access_token
        )
        parent_id = submitted["submitTask"]["aggregateId"]
        task = await until_done(gateway, user.access_token, parent_id, timeout=420)
        store = gateway.platform.store

        assert task["status"] == "COMPLETED", task
        await _assert_each_child_once_and_completed(store, UUID(parent_id), task["result"])
        events = await _events_of(store, UUID(parent_id))
        types = [e.event_type for e in events]
        started = types.index("TaskStarted")
        # Assigned, perhaps more than once (a killed agent of an earlier test may still look
        # online until its heartbeat expires: then the sweep reassigns), then started.
        assert types[0] == "TaskSubmitted"
        assert set(types[1:started]) == {"TaskAssigned"}, types
        assert types[-1] == "TaskCompleted"
        assert types.count("TaskCompleted") == 1
        # Planning was a model call of the orchestrator, caused by the assignment it started.
        assigned = events[started - 1]
        calls = [
            r.envelope
            async for r in store.read(subject_filter="sutazai.events.model_call.>")
            if r.envelope.causation_id == str(assigned.event_id)
        ]
        assert [c.data["purpose"] for c in calls][:1] == ["workflow.plan"]


async def _until_listening(gateway: Gateway, name: str) -> None:
    """Online, and its consumers exist: an assignment made now reaches it."""
    deadline = time.monotonic() + 120
    await until_online(gateway, name, deadline)
    js = gateway.platform.store.client.jetstream()
    while True:
        try:
            await js.consumer_info(EVENTS_STREAM, f"worker-{name}")
            await js.consumer_info(EVENTS_STREAM, CHILDREN)
            return
        except nats.js.errors.NotFoundError:
            pass
        assert time.monotonic() < deadline, f"{name} never listened"
        await asyncio.sleep(0.2)


async def test_a_workflow_survives_kill_9_of_its_orchestrator_and_no_subtask_is_made_twice(
    settings: Settings, stack: Stack
) -> None:
    async with (
        running_gateway(settings, stack, **QUICK) as gateway,
        run_agents(gateway.platform, AgentOptions(only=WORKERS, replica=f"k{uuid4().hex[:6]}")),
    ):
        store = gateway.platform.store
        with doomed_agent(settings, "orchestrator") as (doomed, doomed_name):
            await _until_listening(gateway, doomed_name)
            user = await gateway.client.sign_up()
            submitted = await gateway.client.data(
                SUBMIT, {"payload": {"prompt": GOAL}}, user.access_token
            )
            parent_id = UUID(submitted["submitTask"]["aggregateId"])
            deadline = time.monotonic() + 240
            while [e.event_type for e in await _events_of(store, parent_id)].count(
                "SubtaskAttached"
            ) < 2:
                assert time.monotonic() < deadline, "the doomed orchestrator never submitted"
                await asyncio.sleep(0.02)
            # The successor listens before the crash, so that no assignment can outrun its
            # consumers (run_agents beats the heartbeat before the broker starts).
            successor = AgentOptions(only=("orchestrator",), replica=f"s{uuid4().hex[:6]}")
            async with run_agents(gateway.platform, successor) as (card,):
                crash(doomed)  # mid-workflow: children running
                at_kill = [e.event_type for e in await _events_of(store, parent_id)]
                assert not {"TaskCompleted", "TaskFailed"} & set(at_kill), at_kill
                task = await until_done(gateway, user.access_token, str(parent_id), timeout=420)

        assert task["status"] == "COMPLETED", task
        await _assert_each_child_once_and_completed(store, parent_id, task["result"])
        events = await _events_of(store, parent_id)
        types = [e.event_type for e in events]
        assert types.count("TaskCompleted") == 1, types
        # The successor finished it: reassigned to it once the doomed heartbeat expired, or
        # settled by its share of the children's consumer if the children ended before that.
        assert events[-1].actor.id == card.agent_id


# --- the takeover, step by step, without a model ------------------------------------------------


def _no_model(card: AgentCard) -> ModelPort:
    """A port to a server that is not there: any call to it fails the test's workflow."""

    async def record(call: Any, cause: EventEnvelope) -> None:
        return None

    return ModelPort(
        ollama.AsyncClient(host="http://127.0.0.1:9", timeout=1),
        record,
        agent_id=UUID(card.agent_id),
        chat_model="none",
        embed_model="none",
    )


async def _orchestrator(bus: CommandBus, store: EventStore, tag: str) -> Orchestrator:
    """An orchestrator registered under a name of its own, `tag` telling the tests' apart."""
    name = f"orchestrator-{tag}{uuid4().hex[:6]}"
    card = await register(
        bus, name=name, kind=AgentKind.ORCHESTRATOR, capabilities=CAPABILITIES, model="none"
    )
    return Orchestrator(TaskWorker(bus, store, card, CAPABILITIES), _no_model(card))


async def _task(store: EventStore, task_id: UUID) -> Task:
    """The task as its events fold now."""
    task = (await load_aggregate(store, TASK, task_id)).state
    assert isinstance(task, Task)
    return task


async def _started_workflow(
    bus: CommandBus, store: EventStore, planner: Orchestrator
) -> tuple[Task, EventEnvelope]:
    """A workflow task assigned to `planner` and started: the task and its assignment event."""
    parent_id = UUID(str(uuid7()))
    submit = SubmitTask(task_id=parent_id, owner_id=UUID(str(uuid7())), task_type="workflow")
    await bus.execute(submit, CommandContext(str(uuid7())))
    assigned = await _assign(bus, store, parent_id, planner.worker.card.agent_id)
    await bus.execute(StartTask(task_id=parent_id), CommandContext(str(uuid7())))
    return await _task(store, parent_id), assigned


async def _end_child(
    bus: CommandBus, store: EventStore, planner: Orchestrator, child_id: UUID, *, fail: bool
) -> None:
    """Run a child to its end (failed or completed) and deliver that end to `planner`."""
    await _run_child(bus, store, child_id, fail=fail)
    await planner.on_task_event(Delivered.of((await _events_of(store, child_id))[-1]))


async def _assign(bus: CommandBus, store: EventStore, task_id: UUID, agent: str) -> EventEnvelope:
    await bus.execute(
        AssignTask(task_id=task_id, agent_id=UUID(agent)), CommandContext(str(uuid7()))
    )
    return (await _events_of(store, task_id))[-1]


async def _run_child(bus: CommandBus, store: EventStore, child_id: UUID, *, fail: bool) -> None:
    await _assign(bus, store, child_id, str(uuid4()))
    await bus.execute(StartTask(task_id=child_id), CommandContext(str(uuid7())))
    if fail:
        error = TaskError(code="BROKEN", message="no", retryable=False)
        command: Any = FailTask(task_id=child_id, error=error)
    else:
        command = CompleteTask(task_id=child_id, result={"text": f"done {child_id}"})
    await bus.execute(command, CommandContext(str(uuid7())))


PLAN = Plan(
    steps=(
        Step(task_type="code.generate", prompt="reverse a string", required=True),
        Step(task_type="code.explain", prompt="explain it", required=True),
        Step(task_type="code.review", prompt="review it", required=False),
    )
)


async def test_a_successor_finishes_the_plan_its_predecessor_began_without_the_model(
    bus: CommandBus, event_store: EventStore
) -> None:
    store = event_store
    first = await _orchestrator(bus, store, "a")
    second = await _orchestrator(bus, store, "b")
    parent, assigned = await _started_workflow(bus, store, first)
    parent_id = parent.task_id
    # The first replica got two of three children out, then died.
    assert await first.submit_child(parent, PLAN, 0, assigned)
    assert await first.submit_child(parent, PLAN, 1, assigned)

    taken_over = await _assign(bus, store, parent_id, second.worker.card.agent_id)
    await second.on_assigned(Delivered.of(taken_over))
    await second.on_assigned(Delivered.of(taken_over))  # delivered twice: nothing more
    await first.on_assigned(
        Delivered.of(assigned)
    )  # the first replica's late redelivery: not its task now

    ids = [child_task_id(parent_id, index) for index in range(3)]
    parent = await _task(store, parent_id)
    assert parent.status is TaskStatus.RUNNING
    assert list(parent.subtask_ids) == ids
    assert await _children_submitted(store, parent_id) == Counter(ids)
    assert await second.recorded_plan(parent_id) == PLAN  # the plan came from the first child

    # Children end one by one; whichever replica sees the last end settles the workflow.
    for child_id, fail in zip(ids, (False, False, True), strict=True):
        await _run_child(bus, store, child_id, fail=fail)
    last = (await _events_of(store, ids[-1]))[-1]
    await first.on_task_event(Delivered.of(last))
    await second.on_task_event(Delivered.of(last))
    parent = await _task(store, parent_id)

    # Its optional step failed: it completed, and says that not everything did.
    assert parent.status is TaskStatus.COMPLETED_WITH_FAILURES, parent
    assert parent.result is not None
    steps: Any = parent.result["steps"]
    assert [s["status"] for s in steps] == ["completed", "completed", "failed"]
    assert steps[2]["error"]["code"] == "BROKEN"
    assert steps[2]["required"] is False
    events = await _events_of(store, parent_id)
    types = [e.event_type for e in events]
    assert types.count("TaskCompleted") == 1
    assert types.count("SubtaskAttached") == 3
    assert events[-1].schema_version == 2
    assert events[-1].data["failed_subtask_ids"] == [str(ids[2])]


async def _workflow_with_children(
    bus: CommandBus, store: EventStore, tag: str, count: int
) -> tuple[Orchestrator, Task, list[UUID]]:
    """An orchestrator (`tag` as for `_orchestrator`), a workflow started on it and the first
    `count` children of PLAN each submitted (anew) by it: the orchestrator, the workflow and the
    children's ids."""
    planner = await _orchestrator(bus, store, tag)
    parent, assigned = await _started_workflow(bus, store, planner)
    for index in range(count):
        assert await planner.submit_child(parent, PLAN, index, assigned)
    return planner, parent, [child_task_id(parent.task_id, index) for index in range(count)]


async def test_a_required_subtask_failing_for_good_fails_the_workflow_typed(
    bus: CommandBus, event_store: EventStore
) -> None:
    store = event_store
    planner, parent, ids = await _workflow_with_children(bus, store, "c", 3)
    for child_id, fail in zip(ids, (True, False, False), strict=True):
        await _end_child(bus, store, planner, child_id, fail=fail)
    settled = await _task(store, parent.task_id)

    assert settled.status is TaskStatus.FAILED, settled
    assert settled.error is not None
    assert settled.error.code == "SUBTASK_FAILED"
    assert settled.error.retryable is False
    assert "step 0" in settled.error.message


async def test_a_workflow_whose_children_all_completed_is_completed(
    bus: CommandBus, event_store: EventStore
) -> None:
    store = event_store
    planner = await _orchestrator(bus, store, "e")
    parent, assigned = await _started_workflow(bus, store, planner)
    ids = [child_task_id(parent.task_id, index) for index in range(3)]
    for index, child_id in enumerate(ids):
        assert await planner.submit_child(parent, PLAN, index, assigned)
        await _end_child(bus, store, planner, child_id, fail=False)
    settled = await _task(store, parent.task_id)

    assert settled.status is TaskStatus.COMPLETED, settled
    completed = (await _events_of(store, parent.task_id))[-1]
    assert completed.event_type == "TaskCompleted"
    assert completed.data["failed_subtask_ids"] == []


async def test_a_workflow_whose_optional_child_failed_shows_so_in_graphql(
    settings: Settings, stack: Stack
) -> None:
    async with running_gateway(settings, stack) as gateway:
        platform = gateway.platform
        bus, store = platform.commands.bus, platform.store
        planner, parent, ids = await _workflow_with_children(bus, store, "f", 3)
        # The third step is optional (PLAN): its failure does not fail the workflow.
        for child_id, fail in zip(ids, (False, False, True), strict=True):
            await _end_child(bus, store, planner, child_id, fail=fail)

        task = await until_done(gateway, gateway.admin.access_token, str(parent.task_id), 60)

    assert task["status"] == "COMPLETED_WITH_FAILURES", task
    assert [step["status"] for step in task["result"]["steps"]] == [
        "completed",
        "completed",
        "failed",
    ]


async def test_a_cancelled_workflow_cancels_its_children(
    bus: CommandBus, event_store: EventStore
) -> None:
    store = event_store
    planner, parent, ids = await _workflow_with_children(bus, store, "d", 2)
    parent_id = parent.task_id
    await _run_child(bus, store, ids[0], fail=False)  # one child is done already

    await bus.execute(CancelTask(task_id=parent_id), CommandContext(str(uuid7())))
    cancelled = (await _events_of(store, parent_id))[-1]
    await planner.on_task_event(Delivered.of(cancelled))
    await planner.on_task_event(Delivered.of(cancelled))  # delivered twice: nothing more

    statuses = []
    for child_id in ids:
        child = await _task(store, child_id)
        statuses.append(child.status)
    assert statuses == [TaskStatus.COMPLETED, TaskStatus.CANCELLED]
    cancels = [e for e in await _events_of(store, ids[1]) if e.event_type == "TaskCancelled"]
    assert len(cancels) == 1
    assert cancels[0].causation_id == str(cancelled.event_id)
