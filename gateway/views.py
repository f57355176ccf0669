"""The read side as the gateway asks it: one query, one function, against the read models.

Lists page by keyset: `after` is the (created_at, id) of the last row seen, newest first. The
columns read of an aggregate's table are the ones its spec shows in GraphQL (`schemas/specs.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from schemas.specs import (
    AGENT,
    AGENT_MESSAGE,
    CONVERSATION,
    DOCUMENT,
    TASK,
    USER,
    AggregateSpec,
)

Cursor = tuple[datetime, UUID]


def _select(spec: AggregateSpec, *also: str) -> str:
    """The columns of an aggregate's table that its GraphQL type shows (and `also`)."""
    return ", ".join([*(column.name for column in spec.table.shown), *also])


_TASK_COLUMNS = _select(TASK)
_USER_COLUMNS = _select(USER)
_AGENT_COLUMNS = _select(AGENT)
_MESSAGE_COLUMNS = _select(AGENT_MESSAGE, "task_id")  # messages are grouped by their task
(_MESSAGES,) = CONVERSATION.table.children
# Every column: the first, the conversation's id, groups them.
_CONVERSATION_MESSAGE_COLUMNS = ", ".join(column.name for column in _MESSAGES.columns)
_EVENT_COLUMNS = (
    "sequence, event_id, event_type, schema_version, aggregate_type, aggregate_id,"
    " aggregate_version, occurred_at, actor_id, actor_kind, command_id, correlation_id,"
    " causation_id, reason, data"
)


def _page(after: Cursor | None) -> tuple[datetime | None, UUID | None]:
    return (after[0], after[1]) if after else (None, None)


async def row_by_id(pool: asyncpg.Pool, spec: AggregateSpec, row_id: UUID) -> asyncpg.Record | None:
    """One row of an aggregate's table: a user, an agent, a task, a document, a conversation."""
    table = spec.table
    return await pool.fetchrow(
        f"SELECT {_select(spec)} FROM {table.table} WHERE {table.id_column} = $1", row_id
    )


async def owned_page(
    pool: asyncpg.Pool,
    spec: AggregateSpec,
    *,
    owner_id: UUID | None,
    after: Cursor | None,
    first: int,
) -> list[asyncpg.Record]:
    """Rows of an owned aggregate's table (documents, conversations) newest first, of one owner
    or of all, after a (created_at, id) cursor; a removed document included: its status says so."""
    table = spec.table
    return await pool.fetch(
        f"SELECT {_select(spec)} FROM {table.table} WHERE ($1::uuid IS NULL OR owner_id = $1)"
        f" AND ($2::timestamptz IS NULL OR (created_at, {table.id_column}) < ($2, $3))"
        f" ORDER BY created_at DESC, {table.id_column} DESC LIMIT $4",
        owner_id,
        *_page(after),
        first,
    )


async def credentials(pool: asyncpg.Pool, login: str) -> asyncpg.Record | None:
    """A user by email or username, with the password hash their state holds."""
    if "\x00" in login:
        return None  # no name holds one, and PostgreSQL text cannot even compare it
    return await pool.fetchrow(
        f"SELECT {_USER_COLUMNS}, state->>'password_hash' AS password_hash FROM users"
        " WHERE email = lower($1) OR username = $1",
        login,
    )


async def any_admin(pool: asyncpg.Pool) -> bool:
    """Whether an active admin exists in the read model."""
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')"))


async def users_page(
    pool: asyncpg.Pool, *, after: Cursor | None, first: int
) -> list[asyncpg.Record]:
    """Users, newest first."""
    return await pool.fetch(
        f"SELECT {_USER_COLUMNS} FROM users"
        " WHERE ($1::timestamptz IS NULL OR (created_at, user_id) < ($1, $2))"
        " ORDER BY created_at DESC, user_id DESC LIMIT $3",
        *_page(after),
        first,
    )


async def agents_list(pool: asyncpg.Pool, *, status: str | None) -> list[asyncpg.Record]:
    """Every agent, by name."""
    return await pool.fetch(
        f"SELECT {_AGENT_COLUMNS} FROM agents WHERE ($1::text IS NULL OR status = $1)"
        " ORDER BY name",
        status,
    )


async def tasks_page(
    pool: asyncpg.Pool,
    *,
    status: str | None = None,
    priority: int | None = None,
    agent_id: UUID | None = None,
    owner_id: UUID | None = None,
    after: Cursor | None = None,
    first: int = 20,
) -> list[asyncpg.Record]:
    """Tasks newest first, filtered, after a (created_at, task_id) cursor."""
    return await pool.fetch(
        f"SELECT {_TASK_COLUMNS} FROM tasks"
        " WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR owner_id = $2)"
        " AND ($3::int IS NULL OR priority = $3) AND ($4::uuid IS NULL OR agent_id = $4)"
        " AND ($5::timestamptz IS NULL OR (created_at, task_id) < ($5, $6))"
        " ORDER BY created_at DESC, task_id DESC LIMIT $7",
        status,
        owner_id,
        priority,
        agent_id,
        *_page(after),
        first,
    )


async def subtasks_of(pool: asyncpg.Pool, parent_ids: Sequence[UUID]) -> list[list[asyncpg.Record]]:
    """The subtasks of each parent, oldest first (a dataloader batch)."""
    return await _batch(
        pool, _TASK_COLUMNS, "tasks", "parent_id", parent_ids, "created_at, task_id"
    )


async def messages_of_tasks(
    pool: asyncpg.Pool, task_ids: Sequence[UUID]
) -> list[list[asyncpg.Record]]:
    """The agent messages about each task, oldest first (a dataloader batch)."""
    return await _batch(
        pool, _MESSAGE_COLUMNS, "agent_messages", "task_id", task_ids, "created_at, message_id"
    )


async def messages_of_conversations(
    pool: asyncpg.Pool, conversation_ids: Sequence[UUID]
) -> list[list[asyncpg.Record]]:
    """Each conversation's messages in order (a dataloader batch)."""
    return await _batch(
        pool,
        _CONVERSATION_MESSAGE_COLUMNS,
        _MESSAGES.table,
        "conversation_id",
        conversation_ids,
        "conversation_id, position",
    )


async def owner_of(pool: asyncpg.Pool, aggregate_type: str, aggregate_id: UUID) -> UUID | None:
    """Who owns a task, document or conversation (a user owns themselves); None if unknown."""
    table, id_column, owner_column = _OWNED[aggregate_type]
    value = await pool.fetchval(
        f"SELECT {owner_column} FROM {table} WHERE {id_column} = $1", aggregate_id
    )
    return value if isinstance(value, UUID) else None


def _owned(spec: AggregateSpec, owner_column: str) -> tuple[str, str, str]:
    return spec.table.table, spec.table.id_column, owner_column


_OWNED: dict[str, tuple[str, str, str]] = {
    spec.name: _owned(spec, owner)
    for spec, owner in (
        (TASK, "owner_id"),
        (DOCUMENT, "owner_id"),
        (CONVERSATION, "owner_id"),
        (USER, "user_id"),  # a user owns themselves
    )
}


async def events_page(
    pool: asyncpg.Pool,
    *,
    event_type: str | None,
    actor_id: str | None,
    correlation_id: str | None,
    aggregate_type: str | None,
    aggregate_id: UUID | None,
    since: datetime | None,
    until: datetime | None,
    after_sequence: int,
    first: int,
) -> list[asyncpg.Record]:
    """The event log searched, in stream order from after a sequence."""
    return await pool.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM event_log WHERE sequence > $1"
        " AND ($2::text IS NULL OR event_type = $2) AND ($3::text IS NULL OR actor_id = $3)"
        " AND ($4::text IS NULL OR correlation_id = $4)"
        " AND ($5::text IS NULL OR aggregate_type = $5)"
        " AND ($6::uuid IS NULL OR aggregate_id = $6)"
        " AND ($7::timestamptz IS NULL OR occurred_at >= $7)"
        " AND ($8::timestamptz IS NULL OR occurred_at < $8)"
        " ORDER BY sequence LIMIT $9",
        after_sequence,
        event_type,
        actor_id,
        correlation_id,
        aggregate_type,
        aggregate_id,
        since,
        until,
        first,
    )


async def _batch(
    pool: asyncpg.Pool, columns: str, table: str, key: str, ids: Sequence[UUID], order: str
) -> list[list[asyncpg.Record]]:
    """The rows of `table` whose `key` is one of `ids`, in `order`, grouped by that key in the
    order of `ids` (a dataloader batch)."""
    rows = await pool.fetch(
        f"SELECT {columns} FROM {table} WHERE {key} = ANY($1::uuid[]) ORDER BY {order}", list(ids)
    )
    groups: dict[UUID, list[asyncpg.Record]] = {i: [] for i in ids}
    for row in rows:
        groups[row[key]].append(row)
    return [groups[i] for i in ids]
