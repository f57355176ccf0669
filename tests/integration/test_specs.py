"""The read models in PostgreSQL, and the gateway's queries of them, as the specs describe them.

The migrations are checked on the session's database; the gateway's queries run against one row
of every table in a schema of their own, so the rows never meet another test's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel
from uuid_utils.compat import uuid7

from domain.conversation import Message
from gateway import views
from gateway.types import (
    AgentMessageObject,
    AgentObject,
    ConversationMessage,
    ConversationObject,
    DocumentObject,
    TaskObject,
    UserObject,
)
from projections.migrate import migrate
from runtime.stack import Stack
from schemas.specs import (
    AGENT,
    CONVERSATION,
    DOCUMENT,
    SPECS,
    TASK,
    USER,
    AggregateSpec,
    Column,
    ReadModel,
)

SCRATCH = "spec_views"


def _read_model(spec: AggregateSpec) -> ReadModel:
    assert spec.read_model is not None
    return spec.read_model


WITH_TABLES = [spec for spec in SPECS.values() if spec.read_model is not None]


TABLES: dict[str, tuple[Column, ...]] = {
    **{_read_model(spec).table: _read_model(spec).columns for spec in WITH_TABLES},
    **{child.table: child.columns for spec in WITH_TABLES for child in _read_model(spec).children},
}
"""Every table of a read model, its child tables too -> its columns."""


@pytest.mark.parametrize("table", sorted(TABLES))
async def test_the_migrations_make_each_table_as_its_spec_says(
    postgres: asyncpg.Pool, table: str
) -> None:
    rows = await postgres.fetch(
        "SELECT column_name, udt_name::regtype::text AS sql, is_nullable = 'YES' AS nullable"
        " FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    # By name: a column added by a later migration comes last in the table, wherever the spec
    # lists it, and every reader and writer names its columns.
    made = {row["column_name"]: (row["sql"], row["nullable"]) for row in rows}
    assert made == {c.name: (c.sql, c.nullable) for c in TABLES[table]}


def _value(model: type[BaseModel], column: Column) -> object:
    """A value the column takes, valid for the model's field (an enum's first member)."""
    annotation = model.model_fields.get(column.name)
    kind = None if annotation is None else annotation.annotation
    if isinstance(kind, type) and issubclass(kind, Enum):
        return next(iter(kind)).value
    return {
        "uuid": uuid7(),
        "text": f"{model.__name__}.{column.name}",
        "integer": 1,
        "bigint": 1,
        "boolean": True,
        "double precision": 1.5,
        "timestamp with time zone": datetime.now(UTC),
        "jsonb": '{"a": 1}',
        "text[]": ["x"],
        "uuid[]": [uuid7()],
    }[column.sql]


@pytest.fixture(scope="module")
async def one_of_each(
    stack: Stack, postgres: asyncpg.Pool
) -> AsyncIterator[tuple[asyncpg.Pool, dict[str, dict[str, Any]]]]:
    """A pool on a freshly migrated schema holding one row of every aggregate's table."""
    await postgres.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE; CREATE SCHEMA {SCRATCH}")
    pool = await asyncpg.create_pool(
        stack.postgres_url, min_size=1, max_size=2, server_settings={"search_path": SCRATCH}
    )
    try:
        await migrate(pool)
        rows = {
            spec.name: {c.name: _value(spec.kind.state_type, c) for c in _read_model(spec).columns}
            for spec in WITH_TABLES
        }
        # The relations the gateway's lists follow: a message about the task.
        rows["agent_message"]["task_id"] = rows["task"]["task_id"]
        for spec in WITH_TABLES:
            row = rows[spec.name]
            placeholders = ", ".join(f"${n}" for n in range(1, len(row) + 1))
            await pool.execute(
                f"INSERT INTO {_read_model(spec).table} ({', '.join(row)}) VALUES ({placeholders})",
                *row.values(),
            )
        (child,) = _read_model(SPECS["conversation"]).children
        message = {c.name: _value(Message, c) for c in child.columns}
        message["conversation_id"] = rows["conversation"]["conversation_id"]
        rows["conversation_message"] = message
        placeholders = ", ".join(f"${n}" for n in range(1, len(message) + 1))
        await pool.execute(
            f"INSERT INTO {child.table} ({', '.join(message)}) VALUES ({placeholders})",
            *message.values(),
        )
        yield pool, rows
    finally:
        await pool.close()
        await postgres.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")


def _shown(name: str, *also: str) -> set[str]:
    return {column.name for column in _read_model(SPECS[name]).shown} | set(also)


def _checked(record: asyncpg.Record | None, name: str, *also: str) -> asyncpg.Record:
    assert record is not None, name
    assert set(record.keys()) == _shown(name, *also), name
    return record


async def test_every_query_of_the_gateway_reads_the_columns_the_spec_shows(
    one_of_each: tuple[asyncpg.Pool, dict[str, dict[str, Any]]],
) -> None:
    pool, rows = one_of_each
    task, user = rows["task"], rows["user"]
    found: dict[str, list[asyncpg.Record | None]] = {
        "task": [
            await views.row_by_id(pool, TASK, task["task_id"]),
            *await views.tasks_page(pool, first=5),
            *(await views.subtasks_of(pool, [task["parent_id"]]))[0],
        ],
        "user": [
            await views.row_by_id(pool, USER, user["user_id"]),
            *await views.users_page(pool, after=None, first=5),
        ],
        "agent": [
            await views.row_by_id(pool, AGENT, rows["agent"]["agent_id"]),
            *await views.agents_list(pool, status=None),
        ],
        "document": [
            await views.row_by_id(pool, DOCUMENT, rows["document"]["document_id"]),
            *await views.owned_page(pool, DOCUMENT, owner_id=None, after=None, first=5),
        ],
        "conversation": [
            await views.row_by_id(pool, CONVERSATION, rows["conversation"]["conversation_id"]),
            *await views.owned_page(pool, CONVERSATION, owner_id=None, after=None, first=5),
        ],
    }
    for name, records in found.items():
        assert len(records) == (3 if name == "task" else 2), name
        for record in records:
            _checked(record, name)
    (messages,) = await views.messages_of_tasks(pool, [task["task_id"]])
    assert len(messages) == 1
    _checked(messages[0], "agent_message", "task_id")
    _checked(await views.credentials(pool, user["username"]), "user", "password_hash")
    ((record,),) = await views.messages_of_conversations(
        pool, [rows["conversation"]["conversation_id"]]
    )
    (child,) = _read_model(SPECS["conversation"]).children
    assert set(record.keys()) == {column.name for column in child.columns}


async def test_the_owner_of_an_aggregate_is_read_from_its_table(
    one_of_each: tuple[asyncpg.Pool, dict[str, dict[str, Any]]],
) -> None:
    pool, rows = one_of_each
    for name in ("task", "document", "conversation"):
        row = rows[name]
        owner = await views.owner_of(pool, name, row[_read_model(SPECS[name]).id_column])
        assert owner == row["owner_id"], name
    assert await views.owner_of(pool, "user", rows["user"]["user_id"]) == rows["user"]["user_id"]


Build = Callable[[asyncpg.Record], object]
READS: dict[str, Build] = {
    "task": TaskObject.from_row,
    "user": UserObject.from_row,
    "agent": AgentObject.from_row,
    "document": DocumentObject.from_row,
    "conversation": ConversationObject.from_row,
}


@pytest.mark.parametrize("name", sorted(READS))
async def test_every_shown_column_reaches_its_field_of_the_graphql_type(
    one_of_each: tuple[asyncpg.Pool, dict[str, dict[str, Any]]], name: str
) -> None:
    pool, rows = one_of_each
    build = READS[name]
    record = await views.row_by_id(
        pool, SPECS[name], rows[name][_read_model(SPECS[name]).id_column]
    )
    assert record is not None
    shown = build(record)
    for column in _read_model(SPECS[name]).shown:
        assert column.field is not None
        # Every value written is set, so a field left out of `from_row` shows as None here.
        assert getattr(shown, column.field, None) is not None, (name, column.name)


async def test_messages_reach_their_fields_too(
    one_of_each: tuple[asyncpg.Pool, dict[str, dict[str, Any]]],
) -> None:
    pool, rows = one_of_each
    ((record,),) = await views.messages_of_tasks(pool, [rows["task"]["task_id"]])
    shown: object = AgentMessageObject.from_row(record)
    for column in _read_model(SPECS["agent_message"]).shown:
        assert column.field is not None
        assert getattr(shown, column.field, None) is not None, column.name
    ((record,),) = await views.messages_of_conversations(
        pool, [rows["conversation"]["conversation_id"]]
    )
    shown = ConversationMessage.from_row(record)
    (child,) = _read_model(SPECS["conversation"]).children
    for column in child.shown:
        assert column.field is not None
        assert getattr(shown, column.field, None) is not None, column.name
