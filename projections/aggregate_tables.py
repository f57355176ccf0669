"""Read models with one row per aggregate, folded with the domain's own `evolve`.

A batch's events are grouped by aggregate, folded in memory from each row's stored `state`, and
each touched row is written once. `events_applied` adds up the events folded into a row: it
equals the aggregate's events in the log exactly when none was applied twice or skipped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog
from pydantic import BaseModel

from domain.aggregates import AggregateKind
from eventstore.store import EventStore
from projections.bulk import (
    DomainFold,
    Folded,
    RowFold,
    disagreement,
    fold_log,
    no_cyclic_gc,
    records,
)
from projections.fold import fold
from projections.runtime import Connection
from schemas.envelope import RecordedEvent, aggregate_subjects
from schemas.specs import BOOKKEEPING

log = structlog.get_logger(__name__)

Columns = Callable[[Any], dict[str, Any]]
AfterWrite = Callable[[Connection, list[BaseModel], Mapping[str, str]], Awaitable[None]]


def as_json(value: object) -> str | None:
    """A JSON column's value (None stays SQL NULL)."""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return None if value is None else json.dumps(value, default=str)


@dataclass(frozen=True)
class AggregateTable:
    """How one aggregate kind maps onto its table."""

    kind: AggregateKind
    table: str
    id_column: str
    column_names: tuple[str, ...]
    """The row's own columns, besides its id and the bookkeeping columns."""
    columns: Columns
    """Those columns' values from a folded state."""
    after_write: AfterWrite | None = None
    """Extra writes for the touched states (child tables), in the same transaction."""
    child_tables: tuple[str, ...] = ()
    """The tables `after_write` writes."""
    version: int = 1
    fast_fold: Callable[[], RowFold | None] | None = None
    """A faster fold than the domain's for bulk rebuilds, if any (None when it cannot serve)."""

    def __post_init__(self) -> None:
        if self.fast_fold is not None and self.after_write is not None:
            raise ValueError(f"{self.table}: child tables are written from domain states only")


class AggregateTableProjector:
    """A `Projector` for one `AggregateTable`."""

    def __init__(self, spec: AggregateTable, targets: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.name = spec.table
        self.version = spec.version
        self.subject_filter = aggregate_subjects(spec.kind.name, "*")
        live = (spec.table, *spec.child_tables)
        self.targets = {name: (targets or {}).get(name, name) for name in live}
        self.tables = tuple(self.targets[name] for name in live)
        table = self.targets[spec.table]
        names = [spec.id_column, *spec.column_names, *BOOKKEEPING]
        placeholders = ", ".join(f"${n}" for n in range(1, len(names) + 1))
        updates = ", ".join(
            f"{name} = EXCLUDED.{name}"
            for name in names
            if name not in (spec.id_column, "created_at", "events_applied")
        )
        self._names = names
        # Table and column names come from our own specs, never from input; values are bound.
        self._upsert = (
            f"INSERT INTO {table} AS t ({', '.join(names)}) VALUES ({placeholders}) "
            f"ON CONFLICT ({spec.id_column}) DO UPDATE SET {updates}, "
            "events_applied = t.events_applied + EXCLUDED.events_applied"
        )

    async def apply_batch(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        """Fold the batch's events into their rows."""
        spec = self.spec
        by_id: dict[UUID, list[RecordedEvent]] = {}
        for event in events:
            by_id.setdefault(event.envelope.aggregate_id, []).append(event)
        rows = await connection.fetch(
            f"SELECT {spec.id_column} AS id, state, created_at FROM {self.targets[spec.table]} "
            f"WHERE {spec.id_column} = ANY($1::uuid[])",
            list(by_id),
        )
        known = {row["id"]: row for row in rows}
        records = []
        states: list[BaseModel] = []
        for aggregate_id, own_events in by_id.items():
            row = known.get(aggregate_id)
            stored = None if row is None else spec.kind.state_type.model_validate_json(row["state"])
            state = fold(spec.kind, own_events, stored).state
            assert state is not None
            states.append(state)
            columns = spec.columns(state)
            last = own_events[-1]
            bookkeeping = (
                row["created_at"] if row else own_events[0].envelope.occurred_at,
                last.envelope.occurred_at,
                last.envelope.aggregate_version,
                last.sequence,
                len(own_events),
                state.model_dump_json(),
            )
            own = tuple(columns[name] for name in spec.column_names)
            records.append((aggregate_id, *own, *bookkeeping))
        await connection.executemany(self._upsert, records)
        if spec.after_write is not None:
            await spec.after_write(connection, states, self.targets)

    async def bulk_insert(
        self,
        store: EventStore,
        connection: Connection,
        *,
        up_to: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Fill empty tables from the whole log up to `up_to`: fold in memory, COPY once.

        For rebuilds from sequence 1. Returns how many of the aggregate's events it folded.
        """
        spec = self.spec
        schema, _, table = self.targets[spec.table].rpartition(".")
        with no_cyclic_gc():
            fold, folded = await self._fold(store, up_to=up_to, progress=progress)
            rows = records(folded, fold, spec.column_names)
            await connection.copy_records_to_table(
                table, schema_name=schema or None, columns=self._names, records=rows
            )
            if spec.after_write is not None:
                # Only domain folds have child tables (see `AggregateTable`): states are models.
                states = [row[0] for row in folded.rows.values()]
                await spec.after_write(connection, states, self.targets)
                del states
            events = folded.events
            # Freed here by reference counting: the collector, back on, has nothing to walk.
            del rows, folded
        return events

    async def _fold(
        self, store: EventStore, *, up_to: int, progress: Callable[[int, int], None] | None
    ) -> tuple[RowFold, Folded]:
        """The table's fast fold if it has one that agrees with the domain, else the domain's."""
        spec = self.spec
        domain = DomainFold(spec.kind, spec.columns)
        fast = spec.fast_fold() if spec.fast_fold is not None else None
        if fast is not None:
            folded = await fold_log(
                store, spec.kind.name, fast, up_to=up_to, progress=progress, sample=True
            )
            differs = disagreement(folded, fast, domain, spec.column_names)
            if differs is None:
                return fast, folded
            # Slower but right: the domain is what the rows must match.
            log.warning("projection.fast_fold_differs", table=spec.table, where=differs)
        return domain, await fold_log(store, spec.kind.name, domain, up_to=up_to, progress=progress)

    def retarget(self, tables: Mapping[str, str]) -> AggregateTableProjector:
        """The same projector writing into other tables."""
        return AggregateTableProjector(self.spec, tables)
