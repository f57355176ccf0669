"""The `event_log` read model: every envelope, searchable by aggregate, type, actor, correlation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from eventstore.streams import EVENTS_SUBJECTS
from projections.runtime import Connection
from schemas.envelope import RecordedEvent

_COLUMNS = (
    "sequence",
    "event_id",
    "event_type",
    "schema_version",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "actor_id",
    "actor_kind",
    "command_id",
    "correlation_id",
    "causation_id",
    "reason",
    "data",
)


class EventLogProjector:
    """Copies every envelope into `event_log` (COPY: one round trip per batch)."""

    name = "event_log"
    version = 1
    subject_filter = EVENTS_SUBJECTS

    def __init__(self, table: str = "event_log") -> None:
        self.tables: tuple[str, ...] = (table,)

    def retarget(self, tables: Mapping[str, str]) -> EventLogProjector:
        """The same projector writing into another table."""
        return EventLogProjector(tables.get(self.tables[0], self.tables[0]))

    async def apply_batch(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        """Insert the batch's envelopes."""
        schema, _, table = self.tables[0].rpartition(".")
        await connection.copy_records_to_table(
            table,
            schema_name=schema or None,
            columns=_COLUMNS,
            records=[
                (
                    event.sequence,
                    e.event_id,
                    e.event_type,
                    e.schema_version,
                    e.aggregate_type,
                    e.aggregate_id,
                    e.aggregate_version,
                    e.occurred_at,
                    e.actor.id,
                    e.actor.kind,
                    e.command_id,
                    e.correlation_id,
                    e.causation_id,
                    e.reason,
                    json.dumps(e.data),
                )
                for event in events
                for e in (event.envelope,)
            ],
        )
