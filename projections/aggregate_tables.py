"""Read models with one row per aggregate, folded with the domain's own `evolve`.

A batch's events are grouped by aggregate, folded in memory from each row's stored `state`, and
each touched row is written once. `events_applied` adds up the events folded into a row: it
equals the aggregate's events in the log exactly when none was applied twice or skipped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import from_json

from commands.aggregates import AggregateKind
from commands.loading import LoadedAggregate
from eventstore.store import EventStore
from projections.runtime import Connection
from schemas.envelope import RecordedEvent, aggregate_subjects
from schemas.events import decode_event

Columns = Callable[[Any], dict[str, Any]]
AfterWrite = Callable[[Connection, list[BaseModel], Mapping[str, str]], Awaitable[None]]

_BOOKKEEPING = ("created_at", "updated_at", "version", "last_sequence", "events_applied", "state")


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


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
        names = [spec.id_column, *spec.column_names, *_BOOKKEEPING]
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
            loaded = LoadedAggregate(
                kind=spec.kind, aggregate_id=aggregate_id, remember_commands=False
            )
            row = known.get(aggregate_id)
            if row is not None:
                loaded.state = spec.kind.state_type.model_validate_json(row["state"])
            for event in own_events:
                loaded.apply(event)
            state = loaded.state
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

    async def bulk_load(
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
        kind = self.spec.kind
        # Any JSON holding this aggregate type holds its name as a string: a cheap first sieve.
        sieve = f'"{kind.name}"'.encode()
        # Per aggregate: [state, first occurred_at, last occurred_at, version, sequence, count].
        # Envelopes were validated when appended; here only `data` goes through its model
        # (with upcasting), which is what the fold needs. Times are parsed once per row.
        folded: dict[str, list[Any]] = {}
        async for sequence, body in store.replay_bodies(from_sequence=1, up_to_sequence=up_to):
            if sieve not in body:
                continue
            envelope = from_json(body)
            if envelope["aggregate_type"] != kind.name:
                continue
            event = decode_event(
                envelope["event_type"], envelope["schema_version"], envelope["data"]
            )
            row = folded.get(envelope["aggregate_id"])
            if row is None:
                state = kind.evolve(None, event)
                folded[envelope["aggregate_id"]] = [
                    state, envelope["occurred_at"], envelope["occurred_at"],
                    envelope["aggregate_version"], sequence, 1,
                ]  # fmt: skip
            else:
                row[0] = kind.evolve(row[0], event)
                row[2:6] = (
                    envelope["occurred_at"],
                    envelope["aggregate_version"],
                    sequence,
                    row[5] + 1,
                )
            if progress is not None and sequence % 10_000 == 0:
                progress(sequence, up_to)
        records = []
        states: list[BaseModel] = []
        for aggregate_id, (state, created, updated, version, sequence, count) in folded.items():
            states.append(state)
            columns = self.spec.columns(state)
            records.append(
                (
                    UUID(aggregate_id),
                    *(columns[name] for name in self.spec.column_names),
                    _timestamp(created),
                    _timestamp(updated),
                    version,
                    sequence,
                    count,
                    state.model_dump_json(),
                )
            )
        schema, _, table = self.targets[self.spec.table].rpartition(".")
        await connection.copy_records_to_table(
            table, schema_name=schema or None, columns=self._names, records=records
        )
        if self.spec.after_write is not None:
            await self.spec.after_write(connection, states, self.targets)
        return sum(row[5] for row in folded.values())

    def retarget(self, tables: Mapping[str, str]) -> AggregateTableProjector:
        """The same projector writing into other tables."""
        return AggregateTableProjector(self.spec, tables)
