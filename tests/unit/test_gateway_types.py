"""The gateway's enums and scalars: what they accept, what they answer, and the typed errors."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from uuid_utils.compat import uuid7

from domain.agent import AgentKind, AgentStatus
from domain.conversation import MessageRole
from domain.document import DocumentStatus
from domain.task import TaskStatus
from domain.user import Role
from gateway.errors import GatewayError
from gateway.schema import build_schema
from gateway.types import (
    PRIORITY_RANGE,
    TASK_TYPE_SCALAR,
    TaskObject,
    TaskType,
    check_priority,
    parse_task_type,
)

SCHEMA = build_schema(max_depth=10, max_tokens=2_000, max_aliases_count=10)
GRAPHQL_DOC = Path(__file__).resolve().parents[2] / "docs" / "graphql.md"


async def _errors(query: str, variables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The errors of an operation refused before any resolver runs."""
    result = await SCHEMA.execute(query, variable_values=variables)
    assert result.errors, result
    return [{"message": e.message, **(e.extensions or {})} for e in result.errors]


@pytest.mark.parametrize("value", ["code.generate", "rag.ask", "test.x-1_2", "a"])
def test_a_task_type_of_the_domain_pattern_is_accepted(value: str) -> None:
    assert parse_task_type(value) == value


@pytest.mark.parametrize("value", ["", "Code.generate", "1st", "code generate", "x" * 101, 7])
def test_any_other_task_type_is_a_validation_error_that_says_the_pattern(value: object) -> None:
    with pytest.raises(GraphQLError) as raised:
        parse_task_type(value)
    assert raised.value.extensions == {"code": "VALIDATION"}
    assert "^[a-z][a-z0-9_.-]*$" in raised.value.message


async def test_a_bad_task_type_is_refused_inline_and_as_a_variable() -> None:
    inline = await _errors('mutation { submitTask(input: {taskType: "Bad"}) { sequence } }')
    assert inline[0]["code"] == "VALIDATION"
    assert "a task type is 1 to 100 characters" in inline[0]["message"]
    variable = await _errors(
        "mutation ($t: TaskType!) { submitTask(input: {taskType: $t}) { sequence } }",
        {"t": "no spaces allowed"},
    )
    assert variable[0]["code"] == "VALIDATION"
    assert "no spaces allowed" in variable[0]["message"]


async def test_enum_arguments_take_the_graphql_names_not_the_stored_values() -> None:
    stored = await _errors('{ tasks(filter: {status: "pending"}) { items { id } } }')
    assert stored[0]["code"] == "VALIDATION"
    assert "PENDING" in stored[0]["message"]
    role = await _errors(
        'mutation ($r: Role!) { changeRole(userId: "x", role: $r) { sequence } }', {"r": "admin"}
    )
    assert role[0]["code"] == "VALIDATION"
    assert "ADMIN" in role[0]["message"]


def test_priority_is_checked_against_the_domain_range() -> None:
    low, high = PRIORITY_RANGE
    assert (low, high) == (1, 10)
    assert check_priority(low) == low
    assert check_priority(high) == high
    for wrong in (low - 1, high + 1):
        with pytest.raises(GatewayError) as raised:
            check_priority(wrong)
        assert raised.value.extensions == {"code": "VALIDATION", "field": "priority"}


async def test_a_read_model_row_answers_enum_names_and_its_task_type() -> None:
    now = datetime.now(UTC)
    row = {
        "task_id": uuid7(),
        "owner_id": uuid7(),
        "task_type": "code.generate",
        "priority": 2,
        "status": "timed_out",
        "payload": "{}",
        "attempts": 1,
        "max_attempts": 3,
        "agent_id": None,
        "progress": 0,
        "result": None,
        "error": None,
        "parent_id": None,
        "document_ids": [],
        "created_at": now,
        "updated_at": now,
        "version": 4,
        "last_sequence": 9,
    }

    @strawberry.type
    class Query:
        @strawberry.field
        def task(self) -> TaskObject:
            # A dict reads like the asyncpg row it stands in for.
            return TaskObject.from_row(cast(asyncpg.Record, row))

    schema = strawberry.Schema(
        query=Query, config=StrawberryConfig(scalar_map={TaskType: TASK_TYPE_SCALAR})
    )
    result = await schema.execute("{ task { status taskType priority } }")
    assert result.errors is None, result.errors
    assert result.data == {
        "task": {"status": "TIMED_OUT", "taskType": "code.generate", "priority": 2}
    }


@pytest.mark.parametrize(
    "closed", [TaskStatus, AgentStatus, AgentKind, Role, DocumentStatus, MessageRole]
)
def test_the_docs_list_every_value_of_each_enum(closed: type[StrEnum]) -> None:
    row = next(
        line
        for line in GRAPHQL_DOC.read_text().splitlines()
        if line.startswith(f"| `{closed.__name__}` enum")
    )
    listed = [cell.strip("` ") for cell in row.split("|")[3].split(",")]
    assert listed == [member.name for member in closed]
