"""Every domain event by its wire name, with its schema version and the upcasters of older ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, JsonValue, create_model

from domain.aggregates import AGGREGATES
from domain.model import DomainEvent, Payload

EventModel = type[BaseModel]
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    """A stored event whose type this code does not know (written by a newer release?)."""


EVENTS: dict[str, tuple[str, EventModel]] = {
    model.__name__: (kind.name, model) for kind in AGGREGATES.values() for model in kind.events
}
"""event_type -> (aggregate_type, model)."""


def _task_submitted_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added the documents a task references; older tasks referenced none."""
    return {"parent_id": None, "deadline_seconds": None, **data, "document_ids": []}


def _task_completed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 named the subtasks that did not complete; older completions named none."""
    return {**data, "failed_subtask_ids": []}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("TaskSubmitted", 1): _task_submitted_v1_to_v2,
    ("TaskCompleted", 1): _task_completed_v1_to_v2,
}
"""(event_type, version) -> a function turning that version's data into version + 1's."""


SUPERSEDED: dict[tuple[str, int], EventModel] = {
    # Named and described as the version was, so that its published schema stays as it was.
    ("TaskCompleted", 1): create_model(
        "TaskCompleted",
        __base__=DomainEvent,
        __doc__="The task finished with a result.",
        result=(Payload, ...),
    ),
}
"""(event_type, version) -> the `data` of an older version still in logs, for its published
schema (the platform's own readers upcast it)."""


def schema_version(model: EventModel) -> int:
    """The version the code writes for this event type."""
    return int(getattr(model, "schema_version", 1))


def event_data(event: BaseModel) -> dict[str, JsonValue]:
    """An event as the envelope's `data`."""
    data: dict[str, JsonValue] = event.model_dump(mode="json")
    return data


def decode_event(event_type: str, version: int, data: dict[str, Any]) -> BaseModel:
    """An event of the log as the domain knows it today, upcast from `version` if older."""
    try:
        _, model = EVENTS[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None
    current = schema_version(model)
    while version < current:
        data = UPCASTERS[(event_type, version)](data)
        version += 1
    return model.model_validate(data)
