"""The Task aggregate: a unit of work submitted by an owner and carried out by an agent.

`decide(state, command) -> events` and `evolve(state, event) -> state` are the whole behaviour;
both are pure. Priority 1 is the highest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import Field

from domain.errors import (
    IllegalTransition,
    RetryLimitReached,
    TaskNotRetryable,
    UnknownSubtask,
    require_existing,
    require_new,
)
from domain.model import DomainEvent, ErrorReport, Frozen, Payload, created

AGGREGATE = "task"

Priority = Annotated[int, Field(ge=1, le=10, description="1 is the highest priority")]


class TaskStatus(StrEnum):
    """Where a task is in its life."""

    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    """Finished with a result, but some of its subtasks did not complete (a workflow whose
    optional steps failed)."""
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class TaskError(ErrorReport):
    """Why a task failed, typed: a stable code, a message, and whether trying again may help."""

    retryable: bool


# --- commands -------------------------------------------------------------------------------


class SubmitTask(Frozen):
    """Ask for work to be done."""

    task_id: UUID
    owner_id: UUID
    task_type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.-]*$")
    priority: Priority = 5
    payload: Payload = Field(default_factory=dict)
    max_attempts: int = Field(default=3, ge=1, le=100)
    parent_id: UUID | None = None
    document_ids: tuple[UUID, ...] = Field(default=(), max_length=100)
    deadline_seconds: float | None = Field(default=None, gt=0)


class AttachSubtask(Frozen):
    """Record a child task (submitted with this task as its parent) on the parent."""

    task_id: UUID
    subtask_id: UUID


class AssignTask(Frozen):
    """Give the task to an agent (again, when its previous agent was lost)."""

    task_id: UUID
    agent_id: UUID


class StartTask(Frozen):
    """The assigned agent begins an attempt."""

    task_id: UUID


class ReportTaskProgress(Frozen):
    """The running agent says how far it got."""

    task_id: UUID
    percent: int = Field(ge=0, le=100)
    note: str = Field(default="", max_length=1_000)


class CompleteTask(Frozen):
    """The running agent finished with a result; `failed_subtask_ids` names the attached
    subtasks that did not complete, if any (then the task is `completed_with_failures`)."""

    task_id: UUID
    result: Payload = Field(default_factory=dict)
    failed_subtask_ids: tuple[UUID, ...] = Field(default=(), max_length=100)


class FailTask(Frozen):
    """The attempt failed."""

    task_id: UUID
    error: TaskError


class RetryTask(Frozen):
    """Put a failed task back in the queue for another attempt."""

    task_id: UUID


class CancelTask(Frozen):
    """Stop the task for good."""

    task_id: UUID


class TimeOutTask(Frozen):
    """The task ran past its deadline."""

    task_id: UUID


TaskCommand = (
    SubmitTask
    | AttachSubtask
    | AssignTask
    | StartTask
    | ReportTaskProgress
    | CompleteTask
    | FailTask
    | RetryTask
    | CancelTask
    | TimeOutTask
)

# --- events ---------------------------------------------------------------------------------


class TaskEvent(DomainEvent):
    """Base of the task's events."""


class TaskSubmitted(TaskEvent):
    """Work was asked for. Version 2 added `document_ids` (version 1 events are upcast)."""

    schema_version: ClassVar[int] = 2

    task_id: UUID
    owner_id: UUID
    task_type: str
    priority: int
    payload: Payload
    max_attempts: int
    parent_id: UUID | None
    document_ids: tuple[UUID, ...]
    deadline_seconds: float | None


class SubtaskAttached(TaskEvent):
    """A child task was recorded on its parent."""

    subtask_id: UUID


class TaskAssigned(TaskEvent):
    """An agent was given the task."""

    agent_id: UUID


class TaskStarted(TaskEvent):
    """An attempt began."""

    agent_id: UUID
    attempt: int


class TaskProgressReported(TaskEvent):
    """How far the running attempt got."""

    percent: int
    note: str = ""


class TaskCompleted(TaskEvent):
    """The task finished with a result. Version 2 added `failed_subtask_ids`: the subtasks that
    did not complete (version 1 events are upcast with none)."""

    schema_version: ClassVar[int] = 2

    result: Payload
    failed_subtask_ids: tuple[UUID, ...]


class TaskFailed(TaskEvent):
    """An attempt failed."""

    error: TaskError


class TaskRetried(TaskEvent):
    """A failed task went back to the queue."""

    attempts_left: int


class TaskCancelled(TaskEvent):
    """The task was stopped for good."""


class TaskTimedOut(TaskEvent):
    """The task ran past its deadline."""


EVENT_TYPES: tuple[type[TaskEvent], ...] = (
    TaskSubmitted,
    SubtaskAttached,
    TaskAssigned,
    TaskStarted,
    TaskProgressReported,
    TaskCompleted,
    TaskFailed,
    TaskRetried,
    TaskCancelled,
    TaskTimedOut,
)

# --- state ----------------------------------------------------------------------------------


class Task(Frozen):
    """A task's state, folded from its events."""

    task_id: UUID
    owner_id: UUID
    task_type: str
    priority: int
    payload: Payload
    status: TaskStatus = TaskStatus.PENDING
    max_attempts: int
    attempts: int = 0
    agent_id: UUID | None = None
    progress: int = 0
    result: Payload | None = None
    error: TaskError | None = None
    parent_id: UUID | None = None
    subtask_ids: tuple[UUID, ...] = ()
    document_ids: tuple[UUID, ...] = ()
    deadline_seconds: float | None = None


# --- transitions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """What one event sets on a task, as data the read side folds with too (the `tasks` rows'
    fast fold, the graph), so each transition is written once.

    The creation (`TaskSubmitted` builds the whole task) and `SubtaskAttached` (it appends to a
    list) do more than this says; `evolve` writes those parts out.
    """

    status: TaskStatus | None = None
    """The task's status after the event; None: unchanged."""
    status_if_any: tuple[str, TaskStatus] | None = None
    """(an event field, a status): when that field is not empty, the status is this one."""
    copies: Mapping[str, str] = field(default_factory=dict)
    """Task field <- the event field it takes its value from."""
    sets: Mapping[str, int | None] = field(default_factory=dict)
    """Task field <- a fixed value (the same in the model and in its JSON)."""

    def status_after(self, data: Mapping[str, Any]) -> TaskStatus | None:
        """The status after an event with these fields (its model's or its JSON's)."""
        if self.status_if_any is not None and data.get(self.status_if_any[0]):
            # `get`: an event older than the field (not upcast, as the graph reads it) has none.
            return self.status_if_any[1]
        return self.status

    def changes(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The task's fields this event sets, from the event's fields."""
        found: dict[str, Any] = {**self.sets}
        found.update((name, data[source]) for name, source in self.copies.items())
        status = self.status_after(data)
        if status is not None:
            found["status"] = status
        return found


_TRANSITIONS: dict[type[TaskEvent], Transition] = {
    TaskSubmitted: Transition(status=TaskStatus.PENDING),
    SubtaskAttached: Transition(),
    TaskAssigned: Transition(status=TaskStatus.ASSIGNED, copies={"agent_id": "agent_id"}),
    TaskStarted: Transition(
        status=TaskStatus.RUNNING,
        copies={"agent_id": "agent_id", "attempts": "attempt"},
        sets={"progress": 0, "error": None},
    ),
    TaskProgressReported: Transition(copies={"progress": "percent"}),
    TaskCompleted: Transition(
        status=TaskStatus.COMPLETED,
        status_if_any=("failed_subtask_ids", TaskStatus.COMPLETED_WITH_FAILURES),
        copies={"result": "result"},
        sets={"progress": 100},
    ),
    TaskFailed: Transition(status=TaskStatus.FAILED, copies={"error": "error"}),
    TaskRetried: Transition(status=TaskStatus.PENDING, sets={"agent_id": None}),
    TaskCancelled: Transition(status=TaskStatus.CANCELLED),
    TaskTimedOut: Transition(status=TaskStatus.TIMED_OUT),
}

TRANSITIONS: Mapping[str, Transition] = {
    event.__name__: transition for event, transition in _TRANSITIONS.items()
}
"""Event type (its wire name) -> what it sets on a task. Every task event has one."""


_ACTIVE = frozenset({TaskStatus.PENDING, TaskStatus.ASSIGNED, TaskStatus.RUNNING})
_ASSIGNABLE = _ACTIVE
_FAILABLE = frozenset({TaskStatus.ASSIGNED, TaskStatus.RUNNING})
_TIMEABLE = frozenset({TaskStatus.ASSIGNED, TaskStatus.RUNNING})


def _require(task: Task, allowed: frozenset[TaskStatus], action: str) -> None:
    if task.status not in allowed:
        raise IllegalTransition(AGGREGATE, task.task_id, task.status.value, action)


def decide(task: Task | None, command: TaskCommand) -> list[TaskEvent]:
    """The events a command causes on the task, or a typed domain error."""
    if isinstance(command, SubmitTask):
        require_new(task, AGGREGATE, command.task_id)
        return [TaskSubmitted(**command.model_dump())]
    task = require_existing(task, AGGREGATE, command.task_id)
    match command:
        case AttachSubtask(subtask_id=subtask_id):
            _require(task, _ACTIVE, "attach a subtask to")
            if subtask_id in task.subtask_ids or subtask_id == task.task_id:
                return []
            return [SubtaskAttached(subtask_id=subtask_id)]
        case AssignTask(agent_id=agent_id):
            _require(task, _ASSIGNABLE, "assign")
            return [TaskAssigned(agent_id=agent_id)]
        case StartTask():
            _require(task, frozenset({TaskStatus.ASSIGNED}), "start")
            if task.attempts >= task.max_attempts:
                raise RetryLimitReached(task.task_id, task.max_attempts)
            assert task.agent_id is not None  # assigned implies an agent
            return [TaskStarted(agent_id=task.agent_id, attempt=task.attempts + 1)]
        case ReportTaskProgress(percent=percent, note=note):
            _require(task, frozenset({TaskStatus.RUNNING}), "report progress on")
            return [TaskProgressReported(percent=percent, note=note)]
        case CompleteTask(result=result, failed_subtask_ids=failed):
            _require(task, frozenset({TaskStatus.RUNNING}), "complete")
            unknown = set(failed) - set(task.subtask_ids)
            if unknown:
                raise UnknownSubtask(task.task_id, min(unknown))
            return [TaskCompleted(result=result, failed_subtask_ids=tuple(dict.fromkeys(failed)))]
        case FailTask(error=error):
            _require(task, _FAILABLE, "fail")
            return [TaskFailed(error=error)]
        case RetryTask():
            _require(task, frozenset({TaskStatus.FAILED}), "retry")
            assert task.error is not None  # failed implies an error
            if not task.error.retryable:
                raise TaskNotRetryable(task.task_id, task.error.code)
            if task.attempts >= task.max_attempts:
                raise RetryLimitReached(task.task_id, task.max_attempts)
            return [TaskRetried(attempts_left=task.max_attempts - task.attempts)]
        case CancelTask():
            _require(task, _ACTIVE, "cancel")
            return [TaskCancelled()]
        case TimeOutTask():
            _require(task, _TIMEABLE, "time out")
            return [TaskTimedOut()]
    raise TypeError(f"not a task command: {command!r}")  # pragma: no cover


def evolve(task: Task | None, event: TaskEvent) -> Task:
    """The task after one of its events. Total over the events `decide` emits."""
    transition = TRANSITIONS.get(type(event).__name__)
    if transition is None:
        raise TypeError(f"not a task event: {event!r}")
    if isinstance(event, TaskSubmitted):
        return Task(**event.model_dump(), status=transition.status)
    task = created(task, event, "TaskSubmitted")
    changes = transition.changes(dict(event))
    if isinstance(event, SubtaskAttached):
        changes["subtask_ids"] = (*task.subtask_ids, event.subtask_id)
    return task.model_copy(update=changes)
