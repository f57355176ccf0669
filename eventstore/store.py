"""The event store: one object over a NATS connection for appending, loading and reading events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from uuid import UUID

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventstore.append import AppendResult, append_events
from eventstore.connection import ConnectionWatch, connect_watched
from eventstore.errors import StoreUnavailable
from eventstore.load import direct_get, replay_bodies
from eventstore.read import read_log
from eventstore.snapshots import SnapshotStore
from eventstore.streams import EVENTS_STREAM, EVENTS_SUBJECTS, StreamLayout, ensure_layout
from schemas.envelope import EventEnvelope, RecordedEvent, aggregate_subjects


class EventStore:
    """JetStream as the source of truth. `timeout` bounds every wait for the server.

    Build it with `EventStore.connect` so that calls in flight fail the moment NATS drops; one
    built on a client of your own only learns of an outage from its timeouts.
    """

    def __init__(
        self, client: NatsClient, *, timeout: float = 5.0, watch: ConnectionWatch | None = None
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.watch = watch or ConnectionWatch()
        self.snapshots = SnapshotStore(client, timeout=timeout, watch=self.watch)

    @classmethod
    async def connect(cls, url: str, *, timeout: float, name: str = "sutazai") -> EventStore:
        """Connect to NATS with the connection watched."""
        watch = ConnectionWatch()
        client = await connect_watched(url, name=name, watch=watch, timeout=timeout)
        return cls(client, timeout=timeout, watch=watch)

    async def setup(self, layout: StreamLayout) -> None:
        """Create or update the streams and buckets (idempotent)."""
        await ensure_layout(self.client.jetstream(timeout=self.timeout), layout)

    async def append(
        self, envelopes: Sequence[EventEnvelope], *, expected_sequence: int
    ) -> AppendResult:
        """Append one aggregate's events atomically after `expected_sequence`."""
        return await append_events(
            self.client,
            envelopes,
            expected_sequence=expected_sequence,
            timeout=self.timeout,
            watch=self.watch,
        )

    def load(
        self, aggregate_type: str, aggregate_id: UUID, *, after_sequence: int = 0
    ) -> AsyncIterator[RecordedEvent]:
        """One aggregate's events after `after_sequence`, in order."""
        return direct_get(
            self.client,
            aggregate_subjects(aggregate_type, aggregate_id),
            after_sequence=after_sequence,
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

    def replay_bodies(
        self, *, from_sequence: int, up_to_sequence: int
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Raw event bodies with their sequences, for whole-log replays (see load.replay_bodies)."""
        return replay_bodies(
            self.client,
            from_sequence=from_sequence,
            up_to_sequence=up_to_sequence,
            timeout=self.timeout,
            watch=self.watch,
        )

    async def count_after(self, sequence: int, subject_filter: str) -> int:
        """How many events matching `subject_filter` the log holds after `sequence`.

        Asks the server through a short-lived consumer (nothing is delivered): for status
        displays, not for hot paths.
        """
        js = self.client.jetstream(timeout=self.timeout)
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
            info = await self.client.jetstream(timeout=self.timeout).stream_info(EVENTS_STREAM)
        except nats.errors.Error as error:
            raise StoreUnavailable(f"stream info failed: {error!r}") from error
        return int(info.state.last_seq)
