"""The Postgres read models of docs/architecture.md §5, one per aggregate, plus the event log."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel

from domain.conversation import Conversation, Message
from domain.document import Document
from projections.aggregate_tables import (
    AggregateTable,
    AggregateTableProjector,
    Columns,
    as_json,
)
from projections.event_log import EventLogProjector
from projections.runtime import Connection, Projector
from projections.task_rows import task_row_fold
from schemas.specs import SPECS, AggregateSpec


def _value(value: object, sql: str) -> object:
    """A state field as its column takes it."""
    if sql == "jsonb":
        return as_json(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _row_of(spec: AggregateSpec, computed: Mapping[str, Callable[[Any], object]]) -> Columns:
    """The own columns of a state: each the state's field of its name, unless `computed`.

    Checked here, at import: a column of the spec that is neither a field of the state nor
    computed stops every projector from starting, rather than one row from being written.
    """
    own = {column.name: column.sql for column in spec.table.own_columns}
    plain = tuple((name, sql) for name, sql in own.items() if name not in computed)
    fields = spec.kind.state_type.model_fields
    strays = sorted({*computed} - {*own}) + [name for name, _ in plain if name not in fields]
    if strays:
        raise ValueError(
            f"{spec.table.table}: columns neither computed nor state fields, or computed"
            f" but not in the spec: {strays}"
        )

    def columns(state: Any) -> dict[str, Any]:
        found = {name: _value(getattr(state, name), sql) for name, sql in plain}
        found.update((name, compute(state)) for name, compute in computed.items())
        return found

    return columns


def _inline_content(document: Document) -> bool:
    return document.content is not None


def _message_count(conversation: Conversation) -> int:
    return len(conversation.messages)


_MESSAGE_COLUMNS = tuple(
    (column.name, column.sql)
    for column in next(
        child.columns
        for child in SPECS["conversation"].table.children
        if child.table == "conversation_messages"
    )
)


def _message_row(conversation: Conversation, position: int, message: Message) -> tuple[object, ...]:
    """One `conversation_messages` row: a field of the message by each column's name, unless
    it is the conversation's or the position."""
    own: dict[str, object] = {
        "conversation_id": conversation.conversation_id,
        "position": position,
        # Citations are models: their JSON, not their text.
        "citations": as_json([citation.model_dump(mode="json") for citation in message.citations]),
    }
    return tuple(
        own[name] if name in own else _value(getattr(message, name), sql)
        for name, sql in _MESSAGE_COLUMNS
    )


async def _conversation_messages(
    connection: Connection, states: list[BaseModel], tables: Mapping[str, str]
) -> None:
    """Messages are only ever appended: write the ones past what each conversation holds."""
    conversations = [state for state in states if isinstance(state, Conversation)]
    target = tables["conversation_messages"]
    held = {
        row["conversation_id"]: row["count"]
        for row in await connection.fetch(
            f"SELECT conversation_id, count(*) AS count FROM {target}"
            " WHERE conversation_id = ANY($1::uuid[]) GROUP BY conversation_id",
            [c.conversation_id for c in conversations],
        )
    }
    schema, _, table = target.rpartition(".")
    await connection.copy_records_to_table(
        table,
        schema_name=schema or None,
        columns=[name for name, _ in _MESSAGE_COLUMNS],
        records=[
            _message_row(c, position, m)
            for c in conversations
            for position, m in enumerate(c.messages)
            if position >= held.get(c.conversation_id, 0)
        ],
    )


def _table(
    spec: AggregateSpec,
    computed: Mapping[str, Callable[[Any], object]] | None = None,
    **options: Any,
) -> AggregateTable:
    """The projector's table for an aggregate, its columns as its spec lists them."""
    read_model = spec.table
    return AggregateTable(
        spec.kind,
        read_model.table,
        read_model.id_column,
        tuple(column.name for column in read_model.own_columns),
        _row_of(spec, computed or {}),
        **options,
    )


_COMPUTED: dict[str, Mapping[str, Callable[[Any], object]]] = {
    "document": {"inline_content": _inline_content},
    "conversation": {"message_count": _message_count},
}
"""The columns a state does not hold as a field of their name."""

_OPTIONS: dict[str, dict[str, Any]] = {
    "task": {"fast_fold": task_row_fold},
    "conversation": {
        "after_write": _conversation_messages,
        "child_tables": ("conversation_messages",),
    },
}

TABLES = tuple(
    _table(spec, _COMPUTED.get(name), **_OPTIONS.get(name, {}))
    for name, spec in SPECS.items()
    if spec.read_model is not None
)
"""A table for every aggregate whose spec has a read model."""


def postgres_projectors() -> list[Projector]:
    """Every Postgres projector the platform runs."""
    return [EventLogProjector(), *(AggregateTableProjector(table) for table in TABLES)]


def projector_named(name: str) -> Projector:
    """One projector by name (`tasks`, `event_log`, …)."""
    for projector in postgres_projectors():
        if projector.name == name:
            return projector
    known = ", ".join(p.name for p in postgres_projectors())
    raise LookupError(f"no projector {name!r}; known: {known}")
