"""The read side as the gateway asks it: one query, one function, against the read models."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

_TASK_COLUMNS = (
    "task_id, owner_id, task_type, priority, status, attempts, max_attempts, agent_id, progress,"
    " result, error, parent_id, created_at, updated_at, version, last_sequence"
)


async def task_by_id(pool: asyncpg.Pool, task_id: UUID) -> asyncpg.Record | None:
    """One task row."""
    return await pool.fetchrow(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = $1", task_id)


async def tasks_page(
    pool: asyncpg.Pool,
    *,
    status: str | None = None,
    owner_id: UUID | None = None,
    after: tuple[Any, UUID] | None = None,
    first: int = 20,
) -> list[asyncpg.Record]:
    """Tasks newest first, filtered, after a (created_at, task_id) cursor."""
    return await pool.fetch(
        f"SELECT {_TASK_COLUMNS} FROM tasks"
        " WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR owner_id = $2)"
        " AND ($3::timestamptz IS NULL OR (created_at, task_id) < ($3, $4))"
        " ORDER BY created_at DESC, task_id DESC LIMIT $5",
        status,
        owner_id,
        after[0] if after else None,
        after[1] if after else None,
        first,
    )


async def projection_checkpoint(pool: asyncpg.Pool, name: str) -> int:
    """How far a read model has applied the log (for `minSequence` waits)."""
    value = await pool.fetchval("SELECT sequence FROM projection_checkpoints WHERE name = $1", name)
    return int(value or 0)
