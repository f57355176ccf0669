"""Builders of task commands for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandBus, CommandContext
from domain.task import AssignTask, CompleteTask, ReportTaskProgress, StartTask, SubmitTask
from schemas.envelope import Actor, EventEnvelope, RecordedEvent

OWNER = UUID("01900000-0000-7000-8000-000000000001")
ALICE = Actor(id=str(OWNER), kind="user")


def new_submission(**overrides: object) -> SubmitTask:
    """A valid SubmitTask for a fresh task id.

    Tests that run no agent submit task types no agent does (`test.*`): tests share one log, and
    a later test's agents would otherwise be handed this work before their own.
    """
    values: dict[str, object] = {
        "task_id": uuid7(),
        "owner_id": OWNER,
        "task_type": "test.generate",
        "priority": 3,
        "payload": {"prompt": "write fizzbuzz"},
    }
    values.update(overrides)
    return SubmitTask.model_validate(values)


def context(command_id: str | None = None, **overrides: object) -> CommandContext:
    """A command context with a fresh command id unless one is given."""
    return CommandContext(command_id=command_id or str(uuid4()), actor=ALICE, **overrides)  # type: ignore[arg-type]


def task_event(
    event_type: str, data: dict[str, object], *, actor_id: str = "test"
) -> EventEnvelope:
    """An envelope of a task event for a new task, as an agent would record it."""
    command_id = f"{actor_id}-{uuid4().hex}"
    return EventEnvelope.model_validate(
        {
            "event_id": str(uuid4()),
            "event_type": event_type,
            "schema_version": 1,
            "aggregate_type": "task",
            "aggregate_id": str(uuid4()),
            "aggregate_version": 4,
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": {"id": actor_id, "kind": "agent"},
            "command_id": command_id,
            "correlation_id": command_id,
            "data": data,
        }
    )


def stored_task_envelope(
    task_id: UUID,
    version: int,
    event_type: str,
    data: dict[str, Any],
    *,
    schema_version: int,
    occurred_at: datetime,
) -> EventEnvelope:
    """The envelope of a task's `version`-th event as the log would hold it, recorded by the
    system: its event id and command id numbered by that version."""
    return EventEnvelope(
        event_id=UUID(int=version),
        event_type=event_type,
        schema_version=schema_version,
        aggregate_type="task",
        aggregate_id=task_id,
        aggregate_version=version,
        occurred_at=occurred_at,
        actor=Actor(id="test", kind="system"),
        command_id=f"c{version}",
        correlation_id="c",
        data=data,
    )


async def completed_task(bus: CommandBus, result: dict[str, object]) -> RecordedEvent:
    """A task taken through the bus from submitted to completed (with a progress report on the
    way); its TaskCompleted as the log holds it. Real commands, never a hand-made event: every
    test shares one log, and an event no aggregate could have produced stops the projectors."""
    task_id, agent_id = uuid7(), uuid7()
    actor = Actor(id=str(agent_id), kind="agent")
    for command in (
        SubmitTask(task_id=task_id, owner_id=OWNER, task_type="test.integration"),
        AssignTask(task_id=task_id, agent_id=agent_id),
        StartTask(task_id=task_id),
        ReportTaskProgress(task_id=task_id, percent=50),
        CompleteTask(task_id=task_id, result=result),
    ):
        await bus.execute(command, CommandContext(command_id=str(uuid7()), actor=actor))
    events = [recorded async for recorded in bus.store.aggregate_events("task", task_id)]
    assert events[-1].envelope.event_type == "TaskCompleted"
    return events[-1]
