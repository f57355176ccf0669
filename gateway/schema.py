"""The GraphQL schema: queries over the read models (mutations and subscriptions come next)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from gateway import views


@strawberry.type
class Task:
    """A task as the read model holds it."""

    id: strawberry.ID
    owner_id: strawberry.ID
    task_type: str
    priority: int
    status: str
    attempts: int
    max_attempts: int
    agent_id: strawberry.ID | None
    progress: int
    result: JSON | None
    error: JSON | None
    parent_id: strawberry.ID | None
    created_at: datetime
    updated_at: datetime
    version: int
    sequence: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Task:
        """From a `tasks` row."""
        return cls(
            id=strawberry.ID(str(row["task_id"])),
            owner_id=strawberry.ID(str(row["owner_id"])),
            task_type=row["task_type"],
            priority=row["priority"],
            status=row["status"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            agent_id=strawberry.ID(str(row["agent_id"])) if row["agent_id"] else None,
            progress=row["progress"],
            result=_json(row["result"]),
            error=_json(row["error"]),
            parent_id=strawberry.ID(str(row["parent_id"])) if row["parent_id"] else None,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            version=row["version"],
            sequence=row["last_sequence"],
        )


def _json(value: str | None) -> Any:
    import json

    return None if value is None else json.loads(value)


@strawberry.type
class TaskPage:
    """One page of tasks and the cursor of the next."""

    items: list[Task]
    next_cursor: str | None


def _cursor(row: asyncpg.Record) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['task_id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _after(cursor: str | None) -> tuple[datetime, UUID] | None:
    if cursor is None:
        return None
    created, _, task_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
    return datetime.fromisoformat(created), UUID(task_id)


def _pool(info: Info) -> asyncpg.Pool:
    pool: asyncpg.Pool = info.context["postgres"]
    return pool


@strawberry.type
class Query:
    """What the gateway answers from the read models."""

    @strawberry.field(description="One task by id.")
    async def task(self, info: Info, id: strawberry.ID) -> Task | None:
        row = await views.task_by_id(_pool(info), UUID(str(id)))
        return Task.from_row(row) if row else None

    @strawberry.field(description="Tasks, newest first, optionally by status; cursor paging.")
    async def tasks(
        self, info: Info, status: str | None = None, first: int = 20, after: str | None = None
    ) -> TaskPage:
        first = max(1, min(first, 200))
        rows = await views.tasks_page(_pool(info), status=status, after=_after(after), first=first)
        return TaskPage(
            items=[Task.from_row(row) for row in rows],
            next_cursor=_cursor(rows[-1]) if len(rows) == first else None,
        )


schema = strawberry.Schema(query=Query)
