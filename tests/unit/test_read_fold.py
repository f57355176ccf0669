"""The read side's fold gives what the bus's loading gives, upcasting included, minus commands."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from uuid import UUID

from commands.loading import LoadedAggregate
from domain.aggregates import TASK
from domain.task import (
    AssignTask,
    AttachSubtask,
    CompleteTask,
    StartTask,
    SubmitTask,
    Task,
    TaskCommand,
    TaskCompleted,
    TaskSubmitted,
    decide,
    evolve,
)
from projections.fold import FoldedAggregate, fold
from schemas.envelope import RecordedEvent
from schemas.events import event_data, schema_version
from tests.tasks import stored_task_envelope

TASK_ID = UUID("01900000-0000-7000-8000-0000000000a1")
CHILD = UUID("01900000-0000-7000-8000-0000000000a2")
OWNER = UUID("01900000-0000-7000-8000-0000000000b1")
AGENT = UUID("01900000-0000-7000-8000-0000000000c1")
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _life() -> list[RecordedEvent]:
    """A task's stored events, decided by the domain; its creation and completion stored as
    version 1 (the log still holds such events), so reading them needs upcasting."""
    commands: list[TaskCommand] = [
        SubmitTask(task_id=TASK_ID, owner_id=OWNER, task_type="code.generate"),
        AttachSubtask(task_id=TASK_ID, subtask_id=CHILD),
        AssignTask(task_id=TASK_ID, agent_id=AGENT),
        StartTask(task_id=TASK_ID),
        CompleteTask(task_id=TASK_ID, result={"ok": True}),
    ]
    state: Task | None = None
    stored: list[RecordedEvent] = []
    for command in commands:
        for event in decide(state, command):
            state = evolve(state, event)
            version = schema_version(type(event))
            data = event_data(event)
            if isinstance(event, TaskSubmitted):
                version, data = 1, {k: v for k, v in data.items() if k != "document_ids"}
            if isinstance(event, TaskCompleted):
                version, data = 1, {"result": data["result"]}
            n = len(stored) + 1
            envelope = stored_task_envelope(
                TASK_ID, n, type(event).__name__, data, schema_version=version, occurred_at=AT
            )
            stored.append(RecordedEvent(sequence=10 * n, envelope=envelope))
    return stored


def test_the_read_fold_gives_the_state_version_and_sequence_the_loading_gives() -> None:
    events = _life()
    loaded = LoadedAggregate(kind=TASK, aggregate_id=TASK_ID)
    for recorded in events:
        loaded.apply(recorded)
    folded = fold(TASK, events)
    assert folded.state == loaded.state
    assert (folded.version, folded.sequence) == (loaded.version, loaded.sequence) == (5, 50)


def test_the_read_fold_continues_from_a_stored_state() -> None:
    events = _life()
    halfway = fold(TASK, events[:2])
    assert fold(TASK, events[2:], halfway.state).state == fold(TASK, events).state


def test_the_read_fold_keeps_no_memory_of_commands() -> None:
    assert {field.name for field in fields(FoldedAggregate)} == {
        "kind",
        "state",
        "version",
        "sequence",
    }
