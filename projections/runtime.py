"""Run a Postgres projector: read the log from its checkpoint, apply in batches, exactly once.

Each batch is applied in one transaction together with the new checkpoint, after re-reading
the checkpoint under a row lock: events at or below it are skipped. A crash at any point leaves
either the whole batch and its checkpoint, or neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Literal, Protocol

import asyncpg
import nats.errors
import redis.exceptions
import structlog
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from eventstore.dlq import park
from eventstore.errors import StoreUnavailable
from eventstore.store import EventStore
from eventstore.trace_context import trace_context, traces
from projections.metrics import ProjectionMetrics
from projections.poison import ProjectorStopped
from schemas.envelope import RecordedEvent

log = structlog.get_logger(__name__)


Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A connection of its own or one lent by the pool."""


class Projector(Protocol):
    """A read model fed by events. `apply_batch` runs inside the batch's transaction."""

    name: str
    version: int
    subject_filter: str
    tables: tuple[str, ...]
    """The tables it writes (for rebuild and verify)."""

    async def apply_batch(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        """Apply events (all above the checkpoint, in stream order)."""
        ...

    def retarget(self, tables: Mapping[str, str]) -> Projector:
        """The same projector writing into other tables (`{live name: other name}`)."""
        ...


INFRASTRUCTURE_ERRORS = (
    StoreUnavailable,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""Failures of a server, not of an event: wait and try again."""

PoisonPolicy = Literal["stop", "skip"]


class _StaleBatch(Exception):
    """The checkpoint moved between reading a batch and locking it: the batch is out of date."""


class ProjectionLagging(TimeoutError):
    """A projector did not reach a sequence in time."""


async def checkpoint_of(connection: Connection | asyncpg.Pool, name: str) -> int:
    """The last stream sequence a projector applied (0 before its first)."""
    value = await connection.fetchval(
        "SELECT sequence FROM projection_checkpoints WHERE name = $1", name
    )
    return int(value or 0)


async def wait_for_sequence(
    pool: asyncpg.Pool, name: str, sequence: int, *, timeout: float = 5.0
) -> None:
    """Read-your-writes: return once the projector has applied `sequence`, or fail at timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while await checkpoint_of(pool, name) < sequence:
        if time.monotonic() >= deadline:
            raise ProjectionLagging(f"{name} has not reached sequence {sequence} in {timeout}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


@contextlib.contextmanager
def traced_batch(
    tracer: Tracer | None, projector: str, events: Sequence[RecordedEvent]
) -> Iterator[None]:
    """A span per event that was appended under a trace, as a child of the append's span: one
    trace follows a request into every read model. Ends with the batch's transaction.

    Without a tracer (None), nothing is traced."""
    if tracer is None or not traces(tracer):
        yield
        return
    spans = [
        tracer.start_span(
            f"project {projector}",
            context=trace_context(event.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "sutazai.projector": projector,
                "sutazai.sequence": event.sequence,
                "sutazai.event_type": event.envelope.event_type,
                "messaging.batch.message_count": len(events),
            },
        )
        for event in events
        if event.traceparent
    ]
    try:
        yield
    except BaseException as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(StatusCode.ERROR, type(error).__name__)
        raise
    finally:
        for span in spans:
            span.end()


@dataclass(eq=False)
class ProjectionRunner:
    """Feeds one projector from the event store, in batches, from its checkpoint on."""

    store: EventStore
    pool: asyncpg.Pool
    projector: Projector
    _: KW_ONLY
    batch_size: int = 500
    idle_poll: float = 1.0
    poison_policy: PoisonPolicy = "stop"
    poison_attempts: int = 3
    checkpoint_name: str = ""
    """The checkpoint's row: the projector's name unless given (a rebuild keeps one of its own)."""
    metrics: ProjectionMetrics | None = None
    tracer: Tracer | None = None

    def __post_init__(self) -> None:
        self.checkpoint_name = self.checkpoint_name or self.projector.name

    async def apply_once(self, *, up_to: int | None = None) -> int:
        """Read and apply one batch; returns how many events it moved past (0: caught up).

        An event the projector cannot apply is retried on its own, then parked on the DLQ;
        the projector then stops (`ProjectorStopped`) or, under the "skip" policy, records it
        and goes on.
        """
        while True:
            started = time.perf_counter()
            start = await checkpoint_of(self.pool, self.checkpoint_name)
            batch = [
                event
                async for event in self.store.read(
                    from_sequence=start + 1,
                    subject_filter=self.projector.subject_filter,
                    limit=self.batch_size,
                )
            ]
            if up_to is not None:
                batch = [event for event in batch if event.sequence <= up_to]
            if not batch:
                return 0
            try:
                try:
                    with traced_batch(self.tracer, self.projector.name, batch):
                        applied = await self._apply(batch, start)
                    if self.metrics is not None:
                        seconds = time.perf_counter() - started
                        self.metrics.applied(self.projector.name, applied, seconds)
                    return applied
                except INFRASTRUCTURE_ERRORS:
                    raise
                except _StaleBatch:
                    raise
                except Exception:
                    # An event in the batch does not apply: go one by one, to find it.
                    previous = start
                    for event in batch:
                        await self._apply_alone(event, previous)
                        previous = event.sequence
                    if self.metrics is not None:
                        seconds = time.perf_counter() - started
                        self.metrics.applied(self.projector.name, len(batch), seconds)
                    return len(batch)
            except _StaleBatch:
                continue  # another writer moved the checkpoint meanwhile: read again from it

    async def _apply(
        self, events: Sequence[RecordedEvent], expected: int, *, skip: bool = False
    ) -> int:
        """Apply `events` and move the checkpoint past them, if it is still at `expected`."""
        name = self.checkpoint_name
        async with self.pool.acquire() as connection, connection.transaction():
            # A row to lock even before the first batch, so that two runners serialise here.
            await connection.execute(
                "INSERT INTO projection_checkpoints (name, version, sequence) VALUES ($1, $2, 0)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                self.projector.version,
            )
            current = await connection.fetchval(
                "SELECT sequence FROM projection_checkpoints WHERE name = $1 FOR UPDATE", name
            )
            if (current or 0) != expected:
                raise _StaleBatch
            fresh = list(events)
            if not skip:
                await self.projector.apply_batch(connection, fresh)
            await connection.execute(
                "UPDATE projection_checkpoints SET sequence = $2, version = $3, updated_at = now(),"
                " status = 'running' WHERE name = $1",
                name,
                fresh[-1].sequence,
                self.projector.version,
            )
        return len(fresh)

    async def _apply_alone(self, event: RecordedEvent, expected: int) -> int:
        error: Exception | None = None
        for _ in range(self.poison_attempts):
            try:
                return await self._apply([event], expected)
            except (_StaleBatch, *INFRASTRUCTURE_ERRORS):
                raise
            except Exception as failure:
                error = failure
        assert error is not None
        if self.metrics is not None:
            self.metrics.failed(self.projector.name, "poison")
        await park(self.store, self.projector.name, event, error)
        await self._record_poison(event, error)
        log.error(
            "projection.poison_event",
            projector=self.projector.name,
            sequence=event.sequence,
            event_type=event.envelope.event_type,
            policy=self.poison_policy,
            error=repr(error),
        )
        if self.poison_policy == "stop":
            raise ProjectorStopped(self.projector.name, event.sequence, error)
        return await self._apply([event], expected, skip=True)

    async def _record_poison(self, event: RecordedEvent, error: Exception) -> None:
        status = "stopped" if self.poison_policy == "stop" else "running"
        await self.pool.execute(
            "INSERT INTO projection_checkpoints (name, version, sequence, status, error,"
            " error_sequence) VALUES ($1, $2, 0, $3, $4, $5)"
            " ON CONFLICT (name) DO UPDATE SET status = $3, error = $4, error_sequence = $5,"
            " updated_at = now()",
            self.checkpoint_name,
            self.projector.version,
            status,
            f"{event.envelope.event_type}: {error!r}"[:2_000],
            event.sequence,
        )

    async def catch_up(self) -> int:
        """Apply batches until the log has nothing more; returns the checkpoint."""
        while await self.apply_once():
            pass
        return await checkpoint_of(self.pool, self.checkpoint_name)

    async def run(self, stop: asyncio.Event, *, live: asyncio.Event | None = None) -> None:
        """Apply until `stop` is set; wake on new events, survive store and database outages.

        `live` is set once the runner listens on the server and has read the log once.
        """
        await keep_applying(
            self.apply_once, self.store, self.projector.subject_filter, self.projector.name, stop,
            idle_poll=self.idle_poll, live=live, metrics=self.metrics,
        )  # fmt: skip


async def keep_applying(
    apply_once: Callable[[], Awaitable[int]],
    store: EventStore,
    subject_filter: str,
    name: str,
    stop: asyncio.Event,
    *,
    idle_poll: float = 1.0,
    live: asyncio.Event | None = None,
    metrics: ProjectionMetrics | None = None,
) -> None:
    """Call `apply_once` until `stop`: again at once while it finds work, on the next event (or
    after `idle_poll`) when it does not, with backoff while a server is down. A projector that
    stopped on a poison event ends the loop.

    `stop` is looked at between batches: a batch under way commits or, if the caller cancels at
    its drain deadline, rolls back with its checkpoint. `live` is set once the doorbell's
    subscription is known to the server and one round against the log has gone through.
    """
    doorbell = asyncio.Event()

    async def ring(_message: object) -> None:
        # Every append is also delivered on plain NATS: a cheap "there is something new".
        doorbell.set()

    async def wake_or_stop() -> None:
        waits = {asyncio.ensure_future(doorbell.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    subscription = await store.client.subscribe(subject_filter, cb=ring)
    try:
        backoff = 0.05
        while not stop.is_set():
            # Cleared before reading, so an event that lands during the read rings again.
            doorbell.clear()
            try:
                if live is not None and not live.is_set():
                    # A round trip: from here the server delivers every append to the doorbell.
                    await store.client.flush(timeout=5)
                found = await apply_once()
                if live is not None:
                    live.set()
                if found:
                    backoff = 0.05
                    continue
            except (*INFRASTRUCTURE_ERRORS, nats.errors.Error) as error:
                log.warning("projection.retrying", projector=name, error=repr(error))
                if metrics is not None:
                    metrics.failed(name, "retry")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except ProjectorStopped:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake_or_stop(), timeout=idle_poll)
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
