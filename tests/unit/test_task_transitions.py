"""A task's transitions are written once, in the domain, and every reader of them agrees.

The domain's `evolve`, the fast fold of the `tasks` rows and the graph all take what an event
sets on a task from `domain.task.TRANSITIONS`; a real life of tasks, decided by the domain, is
folded through each of them and compared after every event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from pydantic import BaseModel

from domain.task import (
    EVENT_TYPES,
    TRANSITIONS,
    AssignTask,
    AttachSubtask,
    CancelTask,
    CompleteTask,
    FailTask,
    ReportTaskProgress,
    RetryTask,
    StartTask,
    SubmitTask,
    Task,
    TaskError,
    TaskEvent,
    TimeOutTask,
    decide,
    evolve,
)
from projections.bulk import Envelope
from projections.graph.cypher import statements
from projections.task_rows import task_row_fold
from schemas.envelope import EventEnvelope, RecordedEvent
from schemas.events import event_data, schema_version
from tests.tasks import stored_task_envelope

OWNER = UUID("01900000-0000-7000-8000-0000000000b0")
AGENT = UUID("01900000-0000-7000-8000-0000000000c0")
PARENT, CANCELLED, TIMED_OUT, PLAIN = (
    UUID(f"01900000-0000-7000-8000-00000000000{n}") for n in range(1, 5)
)
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _submit(task_id: UUID, parent_id: UUID | None = None) -> SubmitTask:
    return SubmitTask(
        task_id=task_id, owner_id=OWNER, task_type="code.generate", parent_id=parent_id
    )


LIVES: dict[UUID, list[BaseModel]] = {
    PARENT: [
        _submit(PARENT),
        AssignTask(task_id=PARENT, agent_id=AGENT),
        StartTask(task_id=PARENT),
        ReportTaskProgress(task_id=PARENT, percent=40, note="half way"),
        FailTask(task_id=PARENT, error=TaskError(code="SLOW", message="slow", retryable=True)),
        RetryTask(task_id=PARENT),
        AssignTask(task_id=PARENT, agent_id=AGENT),
        StartTask(task_id=PARENT),
        AttachSubtask(task_id=PARENT, subtask_id=CANCELLED),
        AttachSubtask(task_id=PARENT, subtask_id=TIMED_OUT),
        CompleteTask(task_id=PARENT, result={"ok": True}, failed_subtask_ids=(CANCELLED,)),
    ],
    CANCELLED: [_submit(CANCELLED, PARENT), CancelTask(task_id=CANCELLED)],
    TIMED_OUT: [
        _submit(TIMED_OUT, PARENT),
        AssignTask(task_id=TIMED_OUT, agent_id=AGENT),
        TimeOutTask(task_id=TIMED_OUT),
    ],
    PLAIN: [
        _submit(PLAIN),
        AssignTask(task_id=PLAIN, agent_id=AGENT),
        StartTask(task_id=PLAIN),
        CompleteTask(task_id=PLAIN, result={"answer": 42}),
    ],
}
"""Lives of four tasks that, together, see every task event."""


def _decided(commands: list[BaseModel]) -> list[tuple[TaskEvent, Task]]:
    """Each event the domain decides for these commands, with the task after it."""
    state: Task | None = None
    found = []
    for command in commands:
        for event in decide(state, command):  # type: ignore[arg-type]
            state = evolve(state, event)
            found.append((event, state))
    return found


def _envelope(task_id: UUID, version: int, event: TaskEvent) -> EventEnvelope:
    return stored_task_envelope(
        task_id,
        version,
        type(event).__name__,
        event_data(event),
        schema_version=schema_version(type(event)),
        occurred_at=AT,
    )


def test_the_lives_see_every_task_event() -> None:
    seen = {type(event).__name__ for life in LIVES.values() for event, _ in _decided(life)}
    assert seen == {event.__name__ for event in EVENT_TYPES}


def test_the_row_fold_and_the_graph_agree_with_evolve_after_every_event() -> None:
    fold = task_row_fold()
    assert fold is not None, "the fast fold no longer serves the domain's tasks"
    for task_id, life in LIVES.items():
        row: dict[str, object] | None = None
        for version, (event, task) in enumerate(_decided(life), start=1):
            envelope = _envelope(task_id, version, event)
            row = fold.evolve(
                row,
                Envelope(
                    event_type=envelope.event_type,
                    schema_version=envelope.schema_version,
                    aggregate_type="task",
                    aggregate_id=str(task_id),
                    aggregate_version=version,
                    occurred_at=AT.isoformat(),
                    data=envelope.data,
                ),
            )
            where = f"{envelope.event_type} (version {version} of {task_id})"
            assert row == task.model_dump(mode="json"), where
            graphed = [
                params["status"]
                for _, params in statements(RecordedEvent(sequence=version, envelope=envelope))
                if "status" in params
            ]
            moves = TRANSITIONS[envelope.event_type].status is not None
            assert graphed == ([task.status.value] if moves else []), where


def test_every_transition_names_fields_that_exist() -> None:
    assert set(TRANSITIONS) == {event.__name__ for event in EVENT_TYPES}
    models = {event.__name__: event for event in EVENT_TYPES}
    for kind, transition in TRANSITIONS.items():
        event_fields = set(models[kind].model_fields)
        assert set(transition.copies) <= set(Task.model_fields), kind
        assert set(transition.copies.values()) <= event_fields, kind
        assert set(transition.sets) <= set(Task.model_fields), kind
        if transition.status_if_any is not None:
            assert transition.status_if_any[0] in event_fields, kind
