"""Tasks folded straight from their events' JSON, for bulk rebuilds of the `tasks` table.

A bulk rebuild through the domain spends most of its time validating each event into its model
and copying frozen states. Here a task's state is the dict `Task.model_dump(mode="json")` gives,
changed in place by the domain's own `TRANSITIONS` (what each event sets: status, copied and
fixed fields), so only the creation and the list of subtasks are written out here. The
events were validated by those same models when they were appended; anything this module was
not written for (an event type it lacks, an older schema version) goes through the domain.

Two guards keep it honest: `task_row_fold()` offers nothing once `Task`'s fields or the task
events' versions differ from the ones below, and the bulk insert compares a sample of rows
with the domain's own and rebuilds through the domain if any differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from domain.aggregates import TASK
from domain.task import EVENT_TYPES, TRANSITIONS, Task, Transition
from projections.bulk import Envelope
from schemas.events import decode_event, schema_version

TaskState = dict[str, Any]
Step = Callable[[TaskState, dict[str, Any]], None]

_FIELDS = (
    "task_id", "owner_id", "task_type", "priority", "payload", "status", "max_attempts",
    "attempts", "agent_id", "progress", "result", "error", "parent_id", "subtask_ids",
    "document_ids", "deadline_seconds",
)  # fmt: skip
"""`Task`'s fields, in its order (so the state's JSON reads as the model's)."""

_VERSIONS = {
    "TaskSubmitted": 2, "SubtaskAttached": 1, "TaskAssigned": 1, "TaskStarted": 1,
    "TaskProgressReported": 1, "TaskCompleted": 2, "TaskFailed": 1, "TaskRetried": 1,
    "TaskCancelled": 1, "TaskTimedOut": 1,
}  # fmt: skip
"""The event versions the steps below read."""


def _created_status() -> str:
    status = TRANSITIONS["TaskSubmitted"].status
    assert status is not None  # the creation sets the status
    return status.value


_CREATED = _created_status()


def _submitted(data: dict[str, Any]) -> TaskState:
    return {
        "task_id": data["task_id"],
        "owner_id": data["owner_id"],
        "task_type": data["task_type"],
        "priority": data["priority"],
        "payload": data["payload"],
        "status": _CREATED,
        "max_attempts": data["max_attempts"],
        "attempts": 0,
        "agent_id": None,
        "progress": 0,
        "result": None,
        "error": None,
        "parent_id": data["parent_id"],
        "subtask_ids": [],
        "document_ids": data["document_ids"],
        "deadline_seconds": data["deadline_seconds"],
    }


def _step(transition: Transition) -> Step:
    """The domain's transition, applied to a task's JSON in place."""
    # Looked up once here, not per event: a bulk rebuild runs this step millions of times.
    status = None if transition.status is None else transition.status.value
    varies = transition.status_if_any is not None
    copies = tuple(transition.copies.items())
    sets = tuple(transition.sets.items())

    def step(task: TaskState, data: dict[str, Any]) -> None:
        if varies:
            task["status"] = _status_after(transition, data)
        elif status is not None:
            task["status"] = status
        for name, source in copies:
            task[name] = data[source]
        for name, value in sets:
            task[name] = value

    return step


def _status_after(transition: Transition, data: dict[str, Any]) -> str:
    status = transition.status_after(data)
    assert status is not None  # a transition whose status varies always sets one
    return status.value


def _appending_subtask(step: Step) -> Step:
    """The step, then the subtask appended: the one change the transitions do not describe."""

    def attached(task: TaskState, data: dict[str, Any]) -> None:
        step(task, data)
        task["subtask_ids"].append(data["subtask_id"])

    return attached


# The creation is not a step: it builds the whole state (`_submitted`).
_STEPS: dict[str, Step] = {
    kind: _step(transition) for kind, transition in TRANSITIONS.items() if kind != "TaskSubmitted"
}
_STEPS["SubtaskAttached"] = _appending_subtask(_STEPS["SubtaskAttached"])


def _json(value: object) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


class TaskRowFold:
    """A `RowFold` of tasks over their JSON form."""

    json_columns: tuple[str, ...] = ("payload", "result", "error")

    def evolve(self, task: TaskState | None, event: Envelope) -> TaskState:
        """The task after one event, as `domain.task.evolve` would leave it."""
        if _VERSIONS.get(event.event_type) != event.schema_version:
            return self._through_domain(task, event)
        if event.event_type == "TaskSubmitted":
            return _submitted(event.data)
        if task is None:
            raise ValueError(f"{event.event_type} before TaskSubmitted")
        _STEPS[event.event_type](task, event.data)
        return task

    @staticmethod
    def _through_domain(task: TaskState | None, event: Envelope) -> TaskState:
        state = None if task is None else Task.model_validate(task)
        decoded = decode_event(event.event_type, event.schema_version, event.data)
        folded: TaskState = TASK.evolve(state, decoded).model_dump(mode="json")
        return folded

    def columns(self, task: TaskState) -> Mapping[str, Any]:
        """The columns `projections.read_models` writes for a task (UUIDs as their text)."""
        return {
            "owner_id": task["owner_id"],
            "task_type": task["task_type"],
            "priority": task["priority"],
            "status": task["status"],
            "payload": _json(task["payload"]),
            "attempts": task["attempts"],
            "max_attempts": task["max_attempts"],
            "agent_id": task["agent_id"],
            "progress": task["progress"],
            "result": _json(task["result"]),
            "error": _json(task["error"]),
            "parent_id": task["parent_id"],
            "subtask_ids": task["subtask_ids"],
            "document_ids": task["document_ids"],
            "deadline_seconds": task["deadline_seconds"],
        }

    def state_json(self, task: TaskState) -> str:
        """The state column: the task's JSON, as `Task.model_dump_json` writes it."""
        return msgspec.json.encode(task).decode()


def task_row_fold() -> TaskRowFold | None:
    """The fast fold, or None when the domain has moved on from what it mirrors."""
    versions = {event.__name__: schema_version(event) for event in EVENT_TYPES}
    if tuple(Task.model_fields) != _FIELDS or versions != _VERSIONS:
        return None
    return TaskRowFold()
