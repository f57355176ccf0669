"""How far each read model is and what applying costs, as Prometheus metrics.

Checkpoints and lag are read from `projection_checkpoints` every few seconds rather than
counted in the runners, so the figures are the same whichever process applies a projector (one
holds its lease at a time). Events applied, batch time and errors are counted by the runner
that does the work: summed over processes, they are the projector's.
"""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from eventstore.store import EventStore


class ProjectionMetrics:
    """Checkpoint, lag, events applied, batch time and errors, per projector."""

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
        self.events = Counter(
            "sutazai_projection_events",
            "Events a read model has moved past (applied, or skipped as not its own)",
            ["projector"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "sutazai_projection_batch_seconds",
            "One batch: read from the log, applied and checkpointed in one transaction",
            ["projector"],
            registry=registry,
        )
        self.errors = Counter(
            "sutazai_projection_errors",
            "Failures while applying: `retry` (a server was down; tried again) or `poison` (an"
            " event that does not apply, parked on the DLQ)",
            ["projector", "kind"],
            registry=registry,
        )

    def applied(self, projector: str, events: int, seconds: float) -> None:
        """One batch went through."""
        self.events.labels(projector).inc(events)
        self.batch_seconds.labels(projector).observe(seconds)

    def failed(self, projector: str, kind: str) -> None:
        """A batch failed (`retry`) or an event was parked (`poison`)."""
        self.errors.labels(projector, kind).inc()

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
