"""Tasks folded straight from their events' JSON, for bulk rebuilds of the `tasks` table.

A bulk rebuild through the domain spends most of its time validating each event into its model
and copying frozen states. Here a task's state is the dict `Task.model_dump(mode="json")` gives,
changed in place by one small function per event type that mirrors `domain.task.evolve`. The
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
from domain.task import EVENT_TYPES, Task
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


def _submitted(data: dict[str, Any]) -> TaskState:
    return {
        "task_id": data["task_id"],
        "owner_id": data["owner_id"],
        "task_type": data["task_type"],
        "priority": data["priority"],
        "payload": data["payload"],
        "status": "pending",
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


def _subtask_attached(task: TaskState, data: dict[str, Any]) -> None:
    task["subtask_ids"].append(data["subtask_id"])


def _assigned(task: TaskState, data: dict[str, Any]) -> None:
    task["status"], task["agent_id"] = "assigned", data["agent_id"]


def _started(task: TaskState, data: dict[str, Any]) -> None:
    task.update(
        status="running",
        agent_id=data["agent_id"],
        attempts=data["attempt"],
        progress=0,
        error=None,
    )


def _progress(task: TaskState, data: dict[str, Any]) -> None:
    task["progress"] = data["percent"]


def _completed(task: TaskState, data: dict[str, Any]) -> None:
    status = "completed_with_failures" if data["failed_subtask_ids"] else "completed"
    task.update(status=status, result=data["result"], progress=100)


def _failed(task: TaskState, data: dict[str, Any]) -> None:
    task["status"], task["error"] = "failed", data["error"]


def _retried(task: TaskState, data: dict[str, Any]) -> None:
    task["status"], task["agent_id"] = "pending", None


def _status(status: str) -> Step:
    def step(task: TaskState, data: dict[str, Any]) -> None:
        task["status"] = status

    return step


_STEPS: dict[str, Step] = {
    "SubtaskAttached": _subtask_attached,
    "TaskAssigned": _assigned,
    "TaskStarted": _started,
    "TaskProgressReported": _progress,
    "TaskCompleted": _completed,
    "TaskFailed": _failed,
    "TaskRetried": _retried,
    "TaskCancelled": _status("cancelled"),
    "TaskTimedOut": _status("timed_out"),
}


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
