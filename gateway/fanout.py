"""One reader of the event stream per gateway, fanned out to every subscription it serves.

The gateway follows the log through ONE ordered consumer (on every event subject), started
when the first subscription needs it and stopped when the last one ends. Each event is decoded
once and handed to each follower whose subject filter it matches, through a bounded queue of
the follower's own: a follower that does not keep up (its client reads too slowly) is dropped
once `QUEUE_LIMIT` events wait for it, with an UNAVAILABLE error naming the last sequence it got,
so it can resubscribe from there (`afterSequence`); it never delays the others, and holds at most
twice `QUEUE_LIMIT` events (those waiting, and those it took and is still sending).

A follower that starts in the past catches up with batched direct gets first, registers, then
reads the few events between where it got to and where the shared reader is with direct gets
again: every event once, in order, with no gap, and a long replay never fills its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from uuid import UUID

import structlog
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from eventstore.direct import direct_get
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM
from eventstore.trace_context import TRACEPARENT
from gateway.errors import ErrorCode, GatewayError
from schemas.envelope import EVENT_SUBJECT_PREFIX, EventEnvelope, RecordedEvent

log = structlog.get_logger(__name__)

QUEUE_LIMIT = 1024
"""Events that may wait for one follower; one more and it is dropped (a slow client)."""
OWNERS_KEPT = 50_000
"""Task owners remembered (the first event of a task names it; later ones need a read)."""
ALL_EVENTS = f"{EVENT_SUBJECT_PREFIX}.>"


def subject_matches(pattern: tuple[str, ...], subject: tuple[str, ...]) -> bool:
    """Whether a subject matches a NATS filter (`*` one token, a last `>` the rest)."""
    for index, part in enumerate(pattern):
        if part == ">":
            return len(subject) > index
        if index >= len(subject) or part not in ("*", subject[index]):
            return False
    return len(subject) == len(pattern)


class _Follower:
    """One subscription's place at the shared reader: a bounded queue and why it ended."""

    # Slots, a plain list swapped out whole and a future only while waiting: an idle
    # subscription costs a few hundred bytes here.
    __slots__ = ("failure", "last", "owner", "pattern", "pending", "waiter")

    def __init__(self, pattern: tuple[str, ...], owner: UUID | None) -> None:
        self.pattern = pattern
        self.owner = owner
        self.pending: list[RecordedEvent] = []
        self.waiter: asyncio.Future[None] | None = None
        self.failure: GatewayError | None = None
        self.last = 0
        """The last sequence handed to the client."""

    def wake(self) -> None:
        """Wake the subscription if it waits for events."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        """Until there is something to hand over (or a failure to raise)."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class EventFanout:
    """The shared reader of one gateway's event store (see the module docstring)."""

    def __init__(self, store: EventStore, queue_limit: int = QUEUE_LIMIT) -> None:
        self._store = store
        self.queue_limit = queue_limit
        """Events that may wait for one subscription before it is dropped (tunable)."""
        self._followers: dict[UUID | None, set[_Follower]] = {}
        """By the task owner they follow (None: any event of their subjects)."""
        self._owners: OrderedDict[UUID, UUID | None] = OrderedDict()
        self._reader: asyncio.Task[None] | None = None
        self._position = 0
        """The last sequence handed out: later events are all still to come, in order."""
        self._starting = asyncio.Lock()

    @property
    def followers(self) -> int:
        """How many subscriptions the shared reader serves now."""
        return sum(len(followers) for followers in self._followers.values())

    async def follow(
        self, subject_filter: str, from_sequence: int, *, task_owner: UUID | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Events matching `subject_filter` from `from_sequence` on, then each new one; with
        `task_owner`, only events of that user's tasks."""
        follower = _Follower(tuple(subject_filter.split(".")), task_owner)
        follower.last = from_sequence - 1
        async for recorded in self._stored(subject_filter, follower.last, None):
            follower.last = recorded.sequence
            if task_owner is None or await self.task_owner(recorded) == task_owner:
                yield recorded
        await self._join(follower)
        try:
            async for recorded in self._stored(subject_filter, follower.last, self._position):
                follower.last = recorded.sequence
                if task_owner is None or await self.task_owner(recorded) == task_owner:
                    yield recorded
            while True:
                if follower.failure is not None:
                    raise follower.failure
                batch, follower.pending = follower.pending, []
                for recorded in batch:
                    if follower.failure is not None:
                        raise follower.failure
                    if recorded.sequence > follower.last:
                        follower.last = recorded.sequence
                        yield recorded
                if not follower.pending and follower.failure is None:
                    await follower.wait()
        finally:
            await self._leave(follower)

    async def task_owner(self, recorded: RecordedEvent) -> UUID | None:
        """Who submitted the task an event belongs to (None for other aggregates)."""
        envelope = recorded.envelope
        if envelope.aggregate_type != "task":
            return None
        task_id = envelope.aggregate_id
        if task_id in self._owners:
            self._owners.move_to_end(task_id)
            return self._owners[task_id]
        first = recorded
        if envelope.event_type != "TaskSubmitted":
            async for earliest in self._store.aggregate_events("task", task_id):
                first = earliest
                break
        named = first.envelope.data.get("owner_id")
        owner = UUID(str(named)) if named else None
        self._owners[task_id] = owner
        if len(self._owners) > OWNERS_KEPT:
            self._owners.popitem(last=False)
        return owner

    def _stored(
        self, subject_filter: str, after: int, up_to: int | None
    ) -> AsyncIterator[RecordedEvent]:
        store = self._store
        return direct_get(
            store.client,
            subject_filter,
            after_sequence=after,
            up_to_sequence=up_to,
            timeout=store.timeout,
            watch=store.watch,
        )

    async def _join(self, follower: _Follower) -> None:
        async with self._starting:
            if self._reader is None or self._reader.done():
                subscription = await self._store.client.jetstream().subscribe(
                    ALL_EVENTS,
                    stream=EVENTS_STREAM,
                    ordered_consumer=True,
                    config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
                )
                # NEW starts after the last stored event: what is stored so far is caught up
                # by each follower from the log itself.
                try:
                    self._position = await self._store.last_sequence()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()
                    raise
                self._reader = asyncio.create_task(self._read(subscription), name="fanout")
            self._followers.setdefault(follower.owner, set()).add(follower)

    def _remove(self, follower: _Follower) -> None:
        followers = self._followers.get(follower.owner)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._followers[follower.owner]

    async def _leave(self, follower: _Follower) -> None:
        self._remove(follower)
        async with self._starting:
            reader = self._reader
            if self._followers or reader is None:
                return
            self._reader = None
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, subscription: JetStreamContext.PushSubscription) -> None:
        try:
            async for message in subscription.messages:
                sequence = message.metadata.sequence.stream
                if sequence <= self._position:
                    continue
                recorded = RecordedEvent(
                    sequence=sequence,
                    envelope=EventEnvelope.model_validate_json(message.data),
                    traceparent=(message.headers or {}).get(TRACEPARENT),
                )
                self._position = sequence
                subject = tuple(message.subject.split("."))
                for follower in await self._candidates(recorded):
                    if subject_matches(follower.pattern, subject):
                        self._hand(follower, recorded)
            self._fail(GatewayError(ErrorCode.UNAVAILABLE, "the event stream ended"))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("gateway.fanout_failed", error=repr(error))
            self._fail(GatewayError(ErrorCode.UNAVAILABLE, "the event stream is unavailable"))
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _candidates(self, recorded: RecordedEvent) -> list[_Follower]:
        """Followers that may want an event: those of any owner, and those of its task's."""
        candidates = list(self._followers.get(None, ()))
        if len(self._followers) > (None in self._followers):
            owner = await self.task_owner(recorded)
            if owner is not None:
                candidates.extend(self._followers.get(owner, ()))
        return candidates

    def _hand(self, follower: _Follower, recorded: RecordedEvent) -> None:
        if len(follower.pending) >= self.queue_limit:
            self._remove(follower)
            follower.pending = []
            follower.failure = GatewayError(
                ErrorCode.UNAVAILABLE,
                f"the subscription fell {self.queue_limit} events behind and was dropped;"
                f" resubscribe with afterSequence: {follower.last}",
            )
        else:
            follower.pending.append(recorded)
        follower.wake()

    def _fail(self, failure: GatewayError) -> None:
        for followers in self._followers.values():
            for follower in followers:
                follower.failure = failure
                follower.wake()
        self._followers.clear()


_FANOUTS: weakref.WeakKeyDictionary[NatsClient, EventFanout] = weakref.WeakKeyDictionary()


def fanout_of(store: EventStore) -> EventFanout:
    """The shared reader of the gateway process's connection to NATS (made on first use)."""
    fanout = _FANOUTS.get(store.client)
    if fanout is None:
        fanout = _FANOUTS[store.client] = EventFanout(store)
    return fanout
