"""Feed the graph from the log: batches of idempotent statements written with their checkpoint."""

from __future__ import annotations

import asyncio
import time
from dataclasses import KW_ONLY, dataclass

from opentelemetry.trace import Tracer

from eventstore.store import EventStore
from eventstore.streams import EVENTS_SUBJECTS
from projections.graph.cypher import CHECKPOINT, READ_CHECKPOINT, Statement, statements
from projections.graph.port import GraphPort
from projections.metrics import ProjectionMetrics
from projections.runtime import keep_applying, traced_batch

NAME = "graph"


@dataclass(eq=False)
class GraphProjection:
    """The graph read model. Its checkpoint lives in the graph, written in each batch."""

    store: EventStore
    graph: GraphPort
    _: KW_ONLY
    batch_size: int = 500
    metrics: ProjectionMetrics | None = None
    tracer: Tracer | None = None

    async def checkpoint(self) -> int:
        """The last stream sequence applied to the graph."""
        rows = await self.graph.read(READ_CHECKPOINT, {"name": NAME})
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def apply_once(self) -> int:
        """Apply one batch; returns how many events it moved past (0: caught up)."""
        started = time.perf_counter()
        start = await self.checkpoint()
        batch = [
            event
            async for event in self.store.read(
                from_sequence=start + 1, subject_filter=EVENTS_SUBJECTS, limit=self.batch_size
            )
        ]
        if not batch:
            return 0
        writes: list[Statement] = [s for event in batch for s in statements(event)]
        writes.append((CHECKPOINT, {"name": NAME, "sequence": batch[-1].sequence}))
        with traced_batch(self.tracer, NAME, batch):
            await self.graph.write(writes)
        if self.metrics is not None:
            self.metrics.applied(NAME, len(batch), time.perf_counter() - started)
        return len(batch)

    async def run(self, stop: asyncio.Event, *, live: asyncio.Event | None = None) -> None:
        """Apply until `stop` is set, waking on new events (`live`: see `keep_applying`)."""
        await self.graph.ensure_schema()
        await keep_applying(
            self.apply_once, self.store, EVENTS_SUBJECTS, NAME, stop, live=live,
            metrics=self.metrics,
        )  # fmt: skip

    async def catch_up(self) -> int:
        """Apply until the log has nothing more; returns the checkpoint."""
        await self.graph.ensure_schema()
        while await self.apply_once():
            pass
        return await self.checkpoint()
