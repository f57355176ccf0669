"""How far each read model is: checkpoints and lag, as Prometheus gauges.

Read from `projection_checkpoints` every few seconds rather than counted in the runners, so the
figures are the same whichever process applies a projector (one holds its lease at a time).
"""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from eventstore.store import EventStore


class ProjectionMetrics:
    """`sutazai_projection_checkpoint` and `sutazai_projection_lag_events`, per projector."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checkpoint = Gauge(
            "sutazai_projection_checkpoint",
            "The last log sequence a read model has applied",
            ["projector"],
            registry=registry,
        )
        self.lag = Gauge(
            "sutazai_projection_lag_events",
            "Sequences between the end of the log and a read model's checkpoint (an upper bound"
            " on the events it still has to apply: not every event concerns every read model)",
            ["projector"],
            registry=registry,
        )
        self.log_end = Gauge(
            "sutazai_log_last_sequence", "The last sequence of SUTAZAI_EVENTS", registry=registry
        )

    async def refresh(self, store: EventStore, pool: asyncpg.Pool, names: list[str]) -> None:
        """Read the checkpoints of `names` and the end of the log once."""
        end = await store.last_sequence()
        rows = await pool.fetch(
            "SELECT name, sequence FROM projection_checkpoints WHERE name = ANY($1::text[])", names
        )
        applied = {row["name"]: int(row["sequence"]) for row in rows}
        self.log_end.set(end)
        for name in names:  # a read model that has applied nothing yet is at 0
            self.checkpoint.labels(name).set(applied.get(name, 0))
            self.lag.labels(name).set(max(0, end - applied.get(name, 0)))
