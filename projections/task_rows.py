"""Tasks folded straight from their events' JSON, for bulk rebuilds of the `tasks` table.

A bulk rebuild through the domain spends most of its time validating each event into its model
and copying frozen states. Here a task's state is the dict `Task.model_dump(mode="json")` gives,
changed in place by the domain's own `TRANSITIONS` (what each event sets: status, copied and
fixed fields). The creation takes `Task`'s fields from its event or their defaults, and the row
takes the `tasks` columns of the spec (`schemas/specs.py`), so only the list of subtasks is
written out here. The events were validated by those same models when they were appended;
anything else (an event type it lacks, an older schema version) goes through the domain.

The bulk insert keeps it honest: it compares a sample of rows with the domain's own and
rebuilds through the domain if any differs; `tests/unit/test_task_transitions.py` folds a
decided life through both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from pydantic_core import to_jsonable_python

from domain.aggregates import TASK
from domain.task import TRANSITIONS, Task, TaskSubmitted, Transition
from projections.bulk import Envelope
from schemas.events import decode_event
from schemas.specs import TASK as TASK_SPEC

TaskState = dict[str, Any]
Step = Callable[[TaskState, dict[str, Any]], None]

_VERSIONS: Mapping[str, int] = TASK_SPEC.events
"""The event versions the steps below read: the ones the code writes (older ones are upcast by
the domain)."""

_ORDER = tuple(Task.model_fields)
"""`Task`'s fields, in its order (so the state's JSON reads as the model's)."""
_FROM_EVENT = frozenset(TaskSubmitted.model_fields) & frozenset(_ORDER)
"""The fields the creation copies from its event; every other one starts at its default."""
_DEFAULTS: dict[str, Any] = {
    name: to_jsonable_python(info.get_default(call_default_factory=True))
    for name, info in Task.model_fields.items()
    if name not in _FROM_EVENT
}
_FRESH_LISTS = tuple(name for name, value in _DEFAULTS.items() if isinstance(value, list))
"""Defaults that are lists: each task gets its own, since steps append to them in place."""


def _created_status() -> str:
    status = TRANSITIONS["TaskSubmitted"].status
    assert status is not None  # the creation sets the status
    return status.value


_CREATED = _created_status()


_TEMPLATE: TaskState = {name: _DEFAULTS.get(name) for name in _ORDER}
"""A new task's state before its event's fields: copying it is cheaper than building one (a
profile of a 1M-event rebuild: 5% of it in building each new task's dict key by key)."""
_FROM_EVENT_FIELDS = tuple(_FROM_EVENT)


def _submitted(data: dict[str, Any]) -> TaskState:
    task = _TEMPLATE.copy()  # keys in `Task`'s order; every field not from the event defaulted
    for name in _FROM_EVENT_FIELDS:
        task[name] = data[name]
    for name in _FRESH_LISTS:
        task[name] = []
    task["status"] = _CREATED
    return task


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


_JSON_COLUMNS = tuple(c.name for c in TASK_SPEC.table.own_columns if c.sql == "jsonb")
_PLAIN_COLUMNS = tuple(c.name for c in TASK_SPEC.table.own_columns if c.sql != "jsonb")
"""The `tasks` row's own columns, each a field of the task's JSON of the same name."""


def _json(value: object) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


class TaskRowFold:
    """A `RowFold` of tasks over their JSON form."""

    json_columns: tuple[str, ...] = _JSON_COLUMNS

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
        found = {name: task[name] for name in _PLAIN_COLUMNS}
        for name in _JSON_COLUMNS:
            found[name] = _json(task[name])
        return found

    def state_json(self, task: TaskState) -> str:
        """The state column: the task's JSON, as `Task.model_dump_json` writes it."""
        return msgspec.json.encode(task).decode()


def task_row_fold() -> TaskRowFold | None:
    """The fast fold (None would send a rebuild through the domain)."""
    return TaskRowFold()
