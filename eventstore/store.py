"""The event store: one object over a NATS connection for appending and reading events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from uuid import UUID

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer

from eventstore.aggregate_read import read_aggregate
from eventstore.append import AppendResult, append_events
from eventstore.connection import ConnectionWatch, connect_watched
from eventstore.direct import direct_get
from eventstore.errors import (
    AppendRejected,
    ConcurrencyConflict,
    EventTooLarge,
    StoreUnavailable,
)
from eventstore.metrics import AppendMetrics
from eventstore.read import read_log
from eventstore.replies import ReplyInboxes
from eventstore.snapshots import SnapshotStore
from eventstore.streams import EVENTS_STREAM, EVENTS_SUBJECTS, StreamLayout, ensure_layout
from eventstore.trace_context import current_trace_headers, traces
from schemas.envelope import EventEnvelope, RecordedEvent, aggregate_subjects

_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (ConcurrencyConflict, "conflict"),
    (StoreUnavailable, "unavailable"),
    (EventTooLarge, "too_large"),
    (AppendRejected, "rejected"),
)


class EventStore:
    """JetStream as the source of truth. `timeout` bounds every wait for the server.

    Build it with `EventStore.connect` so that calls in flight fail the moment NATS drops; one
    built on a client of your own only learns of an outage from its timeouts. Appends are
    traced with `tracer` (their trace context goes into the events' headers) and counted in
    `metrics` when given.
    """

    def __init__(
        self,
        client: NatsClient,
        *,
        timeout: float = 5.0,
        watch: ConnectionWatch | None = None,
        tracer: Tracer | None = None,
        metrics: AppendMetrics | None = None,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.watch = watch or ConnectionWatch()
        self.snapshots = SnapshotStore(client, timeout=timeout, watch=self.watch)
        self.tracer = tracer or NoOpTracer()
        self._tracing = traces(self.tracer)
        self.metrics = metrics
        self.inboxes = ReplyInboxes(client)
        """Where direct-get replies arrive: one subscription for every read of this store."""
        self._buckets: dict[str, KeyValue] = {}
        self._object_stores: dict[str, ObjectStore] = {}

    def jetstream(self) -> JetStreamContext:
        """JetStream on the store's connection, its every request bounded by the store's timeout."""
        return self.client.jetstream(timeout=self.timeout)

    async def bucket(self, name: str) -> KeyValue:
        """A key-value bucket of the layout (`ensure_layout` made it), opened once."""
        if name not in self._buckets:
            self._buckets[name] = await self.jetstream().key_value(name)
        return self._buckets[name]

    async def object_store(self, name: str) -> ObjectStore:
        """An object store of the layout (`ensure_layout` made it), opened once."""
        if name not in self._object_stores:
            self._object_stores[name] = await self.jetstream().object_store(name)
        return self._object_stores[name]

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        timeout: float,
        name: str = "sutazai",
        tracer: Tracer | None = None,
        metrics: AppendMetrics | None = None,
    ) -> EventStore:
        """Connect to NATS with the connection watched."""
        watch = ConnectionWatch()
        client = await connect_watched(url, name=name, watch=watch, timeout=timeout)
        return cls(client, timeout=timeout, watch=watch, tracer=tracer, metrics=metrics)

    async def setup(self, layout: StreamLayout) -> None:
        """Create or update the streams and buckets (idempotent)."""
        await ensure_layout(self.jetstream(), layout)

    async def append(
        self, envelopes: Sequence[EventEnvelope], *, expected_sequence: int
    ) -> AppendResult:
        """Append one aggregate's events atomically after `expected_sequence`."""
        if not self._tracing:
            # No span to open and no trace context to pass on: a profile of appends with 64 in
            # flight put the no-op span's context switching at a tenth of our own CPU per append.
            return await self._append(envelopes, expected_sequence, trace=None)
        first = envelopes[0] if envelopes else None
        name = f"append {first.aggregate_type}" if first else "append"
        with self.tracer.start_as_current_span(name, kind=SpanKind.PRODUCER) as span:
            if first is not None and span.is_recording():
                span.set_attributes(
                    {
                        "messaging.system": "nats",
                        "messaging.destination.name": first.subject,
                        "messaging.batch.message_count": len(envelopes),
                        "sutazai.event_types": [e.event_type for e in envelopes],
                        "sutazai.expected_sequence": expected_sequence,
                    }
                )
            result = await self._append(envelopes, expected_sequence, current_trace_headers())
            if span.is_recording():
                span.set_attribute("sutazai.last_sequence", result.last_sequence)
            return result

    async def _append(
        self,
        envelopes: Sequence[EventEnvelope],
        expected_sequence: int,
        trace: dict[str, str] | None,
    ) -> AppendResult:
        started = time.perf_counter()
        try:
            result = await append_events(
                self.client,
                envelopes,
                expected_sequence=expected_sequence,
                timeout=self.timeout,
                watch=self.watch,
                trace=trace,
            )
        except Exception as error:
            if self.metrics is not None:
                reason = next((r for kind, r in _FAILURES if isinstance(error, kind)), "error")
                self.metrics.failed(reason)
            raise
        if self.metrics is not None:
            seconds = time.perf_counter() - started
            self.metrics.stored(len(envelopes), seconds, duplicate=result.duplicate)
        return result

    def aggregate_events(
        self,
        aggregate_type: str,
        aggregate_id: UUID,
        *,
        after_sequence: int = 0,
    ) -> AsyncIterator[RecordedEvent]:
        """One aggregate's events after `after_sequence`, in order."""
        return direct_get(
            self.client,
            aggregate_subjects(aggregate_type, aggregate_id),
            after_sequence=after_sequence,
            timeout=self.timeout,
            watch=self.watch,
            inboxes=self.inboxes,
        )

    async def aggregate_history(
        self, aggregate_type: str, aggregate_id: UUID
    ) -> list[RecordedEvent] | None:
        """All of one aggregate's events, read by their literal subjects (`aggregate_read`).

        None when the reads did not add up (a concurrent append, a long aggregate): read it
        with `aggregate_events` then.
        """
        return await read_aggregate(
            self.client,
            self.inboxes,
            aggregate_type,
            aggregate_id,
            timeout=self.timeout,
            watch=self.watch,
        )

    def read(
        self,
        *,
        from_sequence: int = 1,
        subject_filter: str = EVENTS_SUBJECTS,
        follow: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """The log from a position, to its current end or (`follow`) on into the future."""
        return read_log(
            self.client,
            from_sequence=from_sequence,
            subject_filter=subject_filter,
            follow=follow,
            limit=limit,
            timeout=self.timeout,
            watch=self.watch,
        )

    async def count_after(self, sequence: int, subject_filter: str) -> int:
        """How many events matching `subject_filter` the log holds after `sequence`.

        Asks the server through a short-lived consumer (nothing is delivered): for status
        displays, not for hot paths.
        """
        js = self.jetstream()
        config = ConsumerConfig(
            filter_subject=subject_filter,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=sequence + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=5.0,
            mem_storage=True,
        )
        try:
            info = await js.add_consumer(EVENTS_STREAM, config)
            await js.delete_consumer(EVENTS_STREAM, info.name)
        except nats.errors.Error as error:
            raise StoreUnavailable(f"counting events failed: {error!r}") from error
        return int(info.num_pending or 0)

    async def last_sequence(self) -> int:
        """The sequence of the newest event in the log (0 when empty)."""
        try:
            info = await self.jetstream().stream_info(EVENTS_STREAM)
        except nats.errors.Error as error:
            raise StoreUnavailable(f"stream info failed: {error!r}") from error
        return int(info.state.last_seq)
