"""The short path for plain leaf fields answers exactly as graphql-core's own path does."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import pytest
import strawberry
from strawberry.types import ExecutionResult

from gateway.execution import PlainLeafExecution


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Row:
    name: str
    count: int
    ratio: float
    colour: Colour
    at: datetime
    maybe: str | None
    required: str
    """Set to None by the test to see the non-null error."""

    @strawberry.field
    def shout(self, times: int = 1) -> str:
        return self.name.upper() * times


def _rows() -> list[Row]:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def row(name: str, count: int, colour: Colour, maybe: str | None) -> Row:
        return Row(
            name=name, count=count, ratio=count / 2, colour=colour, at=at, maybe=maybe, required="x"
        )

    broken = row("c", 3, Colour.RED, None)
    broken.required = None  # type: ignore[assignment]
    return [row("a", 1, Colour.RED, None), row("b", 2, Colour.BLUE, "here"), broken]


@strawberry.type
class Query:
    @strawberry.field
    def rows(self) -> list[Row]:
        return _rows()

    @strawberry.field
    def row(self) -> Row:
        return _rows()[2]


QUERIES = (
    "{ rows { name count ratio colour at maybe } }",
    "{ rows { n: name c: count colour __typename shout(times: 2) } }",
    "query ($skip: Boolean!) { rows { name @skip(if: $skip) count @include(if: $skip) } }",
    "{ rows { name required } }",
    "{ row { required } }",
)


@pytest.mark.parametrize("query", QUERIES)
async def test_same_data_and_errors_as_graphql_core(query: str) -> None:
    fast = strawberry.Schema(query=Query, execution_context_class=PlainLeafExecution)
    plain = strawberry.Schema(query=Query)
    variables = {"skip": True}
    ours: ExecutionResult = await fast.execute(query, variable_values=variables)
    theirs: ExecutionResult = await plain.execute(query, variable_values=variables)
    assert ours.data == theirs.data
    assert [(e.message, e.path) for e in ours.errors or []] == [
        (e.message, e.path) for e in theirs.errors or []
    ]


async def test_plain_leaves_build_no_resolve_info() -> None:
    built: list[str] = []

    class Counting(PlainLeafExecution):
        def build_resolve_info(self, field_def, field_nodes, parent_type, path):  # type: ignore[no-untyped-def]
            built.append(field_nodes[0].name.value)
            return super().build_resolve_info(field_def, field_nodes, parent_type, path)

    schema = strawberry.Schema(query=Query, execution_context_class=Counting)
    result = await schema.execute("{ rows { name count colour shout } }")
    assert result.errors is None
    assert built == ["rows", "shout", "shout", "shout"]
