"""Read-model rows as GraphQL objects, derived from each table's spec (docs/architecture.md §5).

A GraphQL object type that shows a table's rows is declared with `@shows(table)`: its `from_row`
reads each shown column (`schemas.specs.Column.field`) into the field of that name, converting by
the column's SQL type and the field's Python type. A column added to the spec with a field of the
same name on the type is shown with no other change here; a spec column whose field the type lacks
fails at import, not at the first query.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from enum import Enum
from typing import ClassVar, Self, TypeVar, cast, get_type_hints

import asyncpg
import strawberry
from pydantic import JsonValue
from strawberry.scalars import JSON

from schemas.specs import Table

Read = Callable[[object], object]
"""Turns one column's value, as asyncpg hands it over, into its field's value."""


def json_value(value: JsonValue) -> JsonValue:
    """A jsonb column's value (asyncpg hands jsonb over as text)."""
    if isinstance(value, str):
        decoded: JsonValue = json.loads(value)
        return decoded
    return value


def _as_id(value: object) -> strawberry.ID | None:
    """A uuid column as a GraphQL ID (None stays None)."""
    return None if value is None else strawberry.ID(str(value))


def _as_ids(values: object) -> list[strawberry.ID]:
    return [strawberry.ID(str(value)) for value in cast(Iterable[object], values)]


def _as_list(values: object) -> list[object]:
    return list(cast(Iterable[object], values))


def _as_json(value: object) -> JSON:
    return JSON(json_value(cast(JsonValue, value)))


# By the column's SQL type. Columns whose value asyncpg already hands over as the field's type
# (text, integer, boolean, timestamps) are passed as they are.
_BY_SQL: dict[str, Read] = {
    "uuid": _as_id,
    "uuid[]": _as_ids,
    "text[]": _as_list,
    "jsonb": _as_json,
}

_RAW = "raw_"
"""A private field `raw_<field>` takes a jsonb column as it is, decoded only when a query asks
for the field (its resolver decodes it)."""


class RowObject:
    """A GraphQL object type that shows rows of one read-model table (set by `shows`)."""

    row_fields: ClassVar[tuple[tuple[str, str, Read | None], ...]] = ()
    """(field, column, how its value is read; None: as it is) for each shown column."""

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Self:
        """The object that shows `row`."""
        values = {
            field: row[column] if read is None else read(row[column])
            for field, column, read in cls.row_fields
        }
        made: Self = cls(**values)
        return made


R = TypeVar("R", bound=type[RowObject])


def shows(table: Table) -> Callable[[R], R]:
    """Makes a strawberry type's `from_row` read the shown columns of `table`."""

    def bind(cls: R) -> R:
        hints = get_type_hints(cls, include_extras=False)
        name = cls.__strawberry_definition__.name  # type: ignore[attr-defined]
        if name != table.graphql_type:
            raise TypeError(
                f"{cls.__name__} is {name}, but {table.table} shows as {table.graphql_type}"
            )
        plan: list[tuple[str, str, Read | None]] = []
        for column in table.shown:
            assert column.field is not None  # `shown` holds only columns with a field
            field = column.field if column.field in hints else _RAW + column.field
            if field not in hints:
                raise TypeError(f"{cls.__name__} has no field {column.field} for {column.name}")
            plan.append(
                (field, column.name, _read(column.sql, hints[field], raw=field != column.field))
            )
        cls.row_fields = tuple(plan)
        return cls

    return bind


def _read(sql: str, hint: object, *, raw: bool) -> Read | None:
    if raw:
        return None
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    return _BY_SQL.get(sql)
