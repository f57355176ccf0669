"""Fill an aggregate table from the whole log with the COPY running while the log is read.

`bulk.fold_log` keeps every aggregate's state until the end of the log and COPYs them all
then: memory grows with the aggregates (640 MB peak for 200k tasks) and Postgres idles while
the log is read. Here only the aggregates touched most recently are held (`WINDOW` of them);
the least recently touched are written out, in chunks, to a COPY that runs beside the read (on
Postgres's own core). An event for an aggregate already written out, which a fold cannot
continue without its state, is kept and applied at the end by the projector's own incremental
`apply_batch`, from the row's stored state, as the live projector would apply it.

The fast fold's check against the domain (`bulk.disagreement`) needs the sampled aggregates'
states at the end: those are never written out early. When it finds a difference, the table is
emptied and filled again through the domain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import islice
from typing import Any, TypeGuard

import structlog

from eventstore.store import EventStore
from projections.aggregate_tables import AggregateTableProjector
from projections.bulk import (
    SAMPLE_EVERY,
    BuildProgress,
    DomainFold,
    Folded,
    RowFold,
    batches_of_kind,
    disagreement,
    no_cyclic_gc,
    record,
)
from projections.runtime import Connection
from schemas.envelope import EventEnvelope, RecordedEvent
from schemas.specs import BOOKKEEPING

log = structlog.get_logger(__name__)

WINDOW = 20_000
"""Aggregates held in memory at most (besides the sampled ones) before the oldest go to COPY."""
CHUNK = 2_000
"""Aggregates written out at a time, the coldest, once `WINDOW` are held: the COPY gets rows in
chunks, not one by one."""
QUEUED = 4
"""Chunks waiting for the COPY at most: the read waits for Postgres past this."""
LATE_BATCH = 1_000
"""Events per `apply_batch` when the late ones are applied."""


def streams(projector: object) -> TypeGuard[AggregateTableProjector]:
    """Whether `stream_into` can build this projector's tables (one table, no child tables)."""
    return isinstance(projector, AggregateTableProjector) and projector.spec.after_write is None


class _Copy:
    """A COPY into one table, fed chunks of rows while it runs."""

    def __init__(self, connection: Connection, target: str, columns: list[str]) -> None:
        self._queue: asyncio.Queue[list[tuple[Any, ...]] | None] = asyncio.Queue(QUEUED)
        schema, _, table = target.rpartition(".")
        self._task = asyncio.create_task(
            connection.copy_records_to_table(
                table, schema_name=schema or None, columns=columns, records=self._rows()
            )
        )

    async def _rows(self) -> AsyncIterator[tuple[Any, ...]]:
        while (chunk := await self._queue.get()) is not None:
            for row in chunk:
                yield row

    async def send(self, chunk: list[tuple[Any, ...]] | None) -> None:
        """Queue rows (None: the last were sent), unless the COPY has failed."""
        put = asyncio.ensure_future(self._queue.put(chunk))
        await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            self._task.result()  # its error, if any
            raise RuntimeError("the COPY ended before its last rows")

    async def finish(self) -> None:
        """Wait for the COPY to end."""
        await self.send(None)
        await self._task

    async def cancel(self) -> None:
        """Stop the COPY (the transaction it is in rolls back)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class _Result:
    """What a streamed fold leaves: counts, the sampled aggregates, the late events."""

    def __init__(self) -> None:
        self.events = 0
        self.kept = Folded()
        self.late: list[tuple[int, bytes]] = []


def _take(
    rows: dict[str, list[Any]], keys: list[str], fold: RowFold, column_names: tuple[str, ...]
) -> list[tuple[Any, ...]]:
    """The aggregates `keys` of `rows` as records, taken out of it."""
    return [record(key, rows.pop(key), fold, column_names) for key in keys]


async def _fold_streaming(
    store: EventStore,
    kind: str,
    fold: RowFold,
    copy: _Copy,
    column_names: tuple[str, ...],
    *,
    up_to: int,
    progress: BuildProgress | None,
    sample: bool,
) -> _Result:
    """Fold the log into `copy`, the least recently touched aggregates first."""
    result = _Result()
    kept, samples = result.kept.rows, result.kept.samples
    late = result.late
    rows: dict[str, list[Any]] = {}  # in order of last touch: the first is the coldest
    written: set[str] = set()
    seen = events = 0
    evolve = fold.evolve
    async for last, batch in batches_of_kind(store, kind, up_to):
        for sequence, event, body in batch:
            aggregate_id = event.aggregate_id
            row = rows.pop(aggregate_id, None)
            if row is None:
                row = kept.get(aggregate_id)
                if row is None:
                    if aggregate_id in written:
                        late.append((sequence, body))
                        continue
                    if len(rows) >= WINDOW:
                        cold = list(islice(rows, CHUNK))
                        written.update(cold)
                        await copy.send(_take(rows, cold, fold, column_names))
                    row = [None, event.occurred_at, None, 0, 0, 0]
                    if sample and seen % SAMPLE_EVERY == 0:
                        samples[aggregate_id] = []
                        kept[aggregate_id] = row
                    seen += 1
            if aggregate_id not in samples:
                rows[aggregate_id] = row
            else:
                samples[aggregate_id].append(event)
            row[0] = evolve(row[0], event)
            row[2] = event.occurred_at
            row[3] = event.aggregate_version
            row[4] = sequence
            row[5] += 1
            events += 1
        if progress is not None:
            progress(last, up_to)
    while rows:
        await copy.send(_take(rows, list(islice(rows, CHUNK)), fold, column_names))
    await copy.send([record(key, row, fold, column_names) for key, row in kept.items()])
    result.events = events
    return result


async def _apply_late(
    projector: AggregateTableProjector, connection: Connection, late: list[tuple[int, bytes]]
) -> None:
    """Events for aggregates already written, through the projector's incremental path."""
    for start in range(0, len(late), LATE_BATCH):
        events = [
            RecordedEvent(sequence=sequence, envelope=EventEnvelope.model_validate_json(body))
            for sequence, body in late[start : start + LATE_BATCH]
        ]
        await projector.apply_batch(connection, events)


async def _build(
    store: EventStore,
    connection: Connection,
    projector: AggregateTableProjector,
    fold: RowFold,
    domain: DomainFold | None,
    *,
    up_to: int,
    progress: BuildProgress | None,
) -> tuple[int, str | None]:
    """Fill the table with `fold`; with `domain`, check a sample against it before the end.

    Returns the events folded and where the sample differs from the domain (None: nowhere).
    """
    spec = projector.spec
    copy = _Copy(
        connection,
        projector.targets[spec.table],
        [spec.id_column, *spec.column_names, *BOOKKEEPING],
    )
    try:
        result = await _fold_streaming(
            store,
            spec.kind.name,
            fold,
            copy,
            spec.column_names,
            up_to=up_to,
            progress=progress,
            sample=domain is not None,
        )
    except BaseException:
        await copy.cancel()
        raise
    await copy.finish()
    if domain is not None:
        differs = disagreement(result.kept, fold, domain, spec.column_names)
        if differs is not None:
            return result.events, differs
    await _apply_late(projector, connection, result.late)
    return result.events + len(result.late), None


async def stream_into(
    store: EventStore,
    connection: Connection,
    projector: AggregateTableProjector,
    *,
    up_to: int,
    progress: BuildProgress | None = None,
) -> int:
    """Fill the projector's empty table from the log up to `up_to`; the events it folded.

    With the table's fast fold if it agrees with the domain on a sample, else the domain's.
    """
    spec = projector.spec
    domain = DomainFold(spec.kind, spec.columns)
    fast = spec.fast_fold() if spec.fast_fold is not None else None
    with no_cyclic_gc():
        if fast is not None:
            events, differs = await _build(
                store, connection, projector, fast, domain, up_to=up_to, progress=progress
            )
            if differs is None:
                return events
            # Slower but right: the domain is what the rows must match.
            log.warning("projection.fast_fold_differs", table=spec.table, where=differs)
            await connection.execute(f"TRUNCATE {projector.targets[spec.table]}")
        events, _ = await _build(
            store, connection, projector, domain, None, up_to=up_to, progress=progress
        )
    return events
