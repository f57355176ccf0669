"""Read stored events by subject with JetStream batch direct get: no consumer per read."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventstore.connection import ConnectionWatch
from eventstore.errors import StoreUnavailable
from eventstore.replies import ReplyInboxes
from eventstore.streams import EVENTS_STREAM
from eventstore.trace_context import TRACEPARENT
from eventstore.wire_replay import wire_address, wire_replay
from schemas.envelope import EventEnvelope, RecordedEvent

BATCH = 1_000
_END_OF_BATCH = "204"
_NOT_FOUND = "404"


class _Batch:
    """The replies to one batch request, complete when the server's status message arrives."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.status: str | None = None
        self.headers: dict[str, str] = {}
        self.complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def expect(self) -> None:
        self.messages, self.status, self.headers = [], None, {}
        self.complete = asyncio.get_running_loop().create_future()

    async def collect(self, message: Msg) -> None:
        headers = message.headers or {}
        status = headers.get("Status")
        if status is None:
            self.messages.append(message)
            return
        self.status, self.headers = status, headers
        if not self.complete.done():
            self.complete.set_result(None)

    def take(self) -> tuple[list[Msg], str | None, dict[str, str]]:
        return self.messages, self.status, self.headers


async def direct_get(
    client: NatsClient,
    subject_filter: str,
    *,
    after_sequence: int = 0,
    up_to_sequence: int | None = None,
    limit: int | None = None,
    timeout: float,
    watch: ConnectionWatch,
    stream: str = EVENTS_STREAM,
    inboxes: ReplyInboxes | None = None,
) -> AsyncIterator[RecordedEvent]:
    """Stored events matching `subject_filter` after `after_sequence`, in stream order.

    All of them up to the end of the stream (or `up_to_sequence`), or the first `limit`.

    Answered by the stream's direct-get responders in batches of `BATCH`; a batch that ends
    with messages still pending is followed by the next one. Replies come to an inbox of
    `inboxes` when given (no subscription per read), else to one subscribed for this read.
    """
    if not client.is_connected:
        raise StoreUnavailable("not connected to NATS")
    batch = _Batch()
    # A callback that collects a whole batch, rather than one awaited `next_msg` per message:
    # that costs a task and a timer per event, which dominated replays.
    replies: Subscription | None = None
    if inboxes is not None:
        inbox = await inboxes.open(batch.collect)
    else:
        inbox = client.new_inbox()
        replies = await client.subscribe(inbox, cb=batch.collect)
    api = f"$JS.API.DIRECT.GET.{stream}"
    next_sequence = after_sequence + 1
    remaining = limit
    try:
        while remaining is None or remaining > 0:
            request: dict[str, object] = {
                "seq": next_sequence,
                "next_by_subj": subject_filter,
                "batch": BATCH if remaining is None else min(BATCH, remaining),
            }
            batch.expect()
            await client.publish(api, json.dumps(request).encode(), reply=inbox)
            with watch.bounded("a read"):
                await asyncio.wait_for(batch.complete, timeout)
            messages, status, headers = batch.take()
            for message in messages:
                sequence = int(message.headers["Nats-Sequence"])  # type: ignore[index]
                if up_to_sequence is not None and sequence > up_to_sequence:
                    return
                next_sequence = sequence + 1
                if remaining is not None:
                    remaining -= 1
                yield RecordedEvent(
                    sequence=sequence,
                    envelope=EventEnvelope.model_validate_json(message.data),
                    traceparent=message.headers.get(TRACEPARENT),  # type: ignore[union-attr]
                )
            if status == _NOT_FOUND:
                return
            if status != _END_OF_BATCH:
                raise StoreUnavailable(f"direct get answered {status}: {headers}")
            if int(headers.get("Nats-Num-Pending", "0")) == 0:
                return
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as error:
        raise StoreUnavailable(f"NATS did not answer a read: {error!r}") from error
    finally:
        if inboxes is not None:
            inboxes.close(inbox)
        if replies is not None:
            with contextlib.suppress(nats.errors.Error):
                await replies.unsubscribe()


REPLAY_BATCH = 10_000
"""Events per request of a whole-log replay: fewer round trips than `BATCH`, bounded memory."""
REPLAY_BATCH_BYTES = 16 * 1024 * 1024
"""The server ends a replay batch early past this many bytes (large documents stay bounded)."""
WIRE_AHEAD = 3
"""Requests in flight on a replay's own connection: the server answers them side by side (a
1M-event log read alone: 3.4-3.9 s with two ahead, 2.5 s with three, 2.6 s with four)."""


async def replay_batches(
    client: NatsClient,
    *,
    from_sequence: int,
    up_to_sequence: int,
    timeout: float,
    watch: ConnectionWatch,
    stream: str = EVENTS_STREAM,
    batch: int = REPLAY_BATCH,
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Every stored event body from `from_sequence` to `up_to_sequence`, a batch at a time.

    Yields (sequence of the batch's first body, bodies in stream order). For replays of the
    whole log: the server sends bodies without headers (whose parsing was most of a replay's
    cost) and each sequence is known by position, because the event stream refuses deletes and
    purges and so has no gaps. Each batch's last sequence, which the server does send, is
    checked against that count.

    Two requests are in flight at once, each on an inbox of its own (so their replies never
    mix, whichever server answers): the server gathers the next batch while the caller works
    through this one. The next request starts where a full batch would end; when the server
    ends one early (at `REPLAY_BATCH_BYTES`), the request sent ahead is dropped and sent again.
    """
    if not client.is_connected:
        raise StoreUnavailable("not connected to NATS")
    address = wire_address(client.connected_url, client._server_info)
    if address is not None:
        # The same requests on a connection of the replay's own, parsed without nats-py's
        # per-message machinery (see `wire_replay`).
        async for item in wire_replay(
            address,
            stream=stream,
            from_sequence=from_sequence,
            up_to_sequence=up_to_sequence,
            batch=batch,
            max_bytes=REPLAY_BATCH_BYTES,
            timeout=timeout,
            ahead=WIRE_AHEAD,
        ):
            yield item
        return
    api = f"$JS.API.DIRECT.GET.{stream}"
    free: list[tuple[_Batch, str]] = []
    subscriptions: list[Subscription] = []
    in_flight: deque[tuple[int, _Batch, str]] = deque()
    next_sequence = from_sequence

    async def ask(collector: _Batch, inbox: str) -> None:
        nonlocal next_sequence
        size = min(batch, up_to_sequence - next_sequence + 1)
        request = {
            "seq": next_sequence,
            "next_by_subj": ">",
            "batch": size,
            "max_bytes": REPLAY_BATCH_BYTES,
            "no_hdr": True,
        }
        collector.expect()
        await client.publish(api, json.dumps(request).encode(), reply=inbox)
        in_flight.append((next_sequence, collector, inbox))
        next_sequence += size

    async def answered(collector: _Batch) -> None:
        with watch.bounded("a replay"):
            await asyncio.wait_for(collector.complete, timeout)

    try:
        for _ in range(2):
            collector, inbox = _Batch(), client.new_inbox()
            subscriptions.append(await client.subscribe(inbox, cb=collector.collect))
            free.append((collector, inbox))
        while True:
            while free and next_sequence <= up_to_sequence:
                await ask(*free.pop())
            if not in_flight:
                return
            sequence, collector, inbox = in_flight.popleft()
            await answered(collector)
            messages, status, headers = collector.take()
            if status == _NOT_FOUND or not messages:
                return
            last = sequence + len(messages) - 1
            if status != _END_OF_BATCH or int(headers.get("Nats-Last-Sequence", "-1")) != last:
                raise StoreUnavailable(
                    f"replay from {sequence} expected to end at {last}, the server said {headers}"
                )
            free.append((collector, inbox))
            if in_flight and in_flight[0][0] != last + 1:
                # A short batch: what was asked ahead starts past a gap. Let it finish (its
                # inbox is reused) and ask again from here.
                while in_flight:
                    _, ahead, ahead_inbox = in_flight.popleft()
                    await answered(ahead)
                    free.append((ahead, ahead_inbox))
            if not in_flight:
                next_sequence = last + 1
            yield sequence, [message.data for message in messages]
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as error:
        raise StoreUnavailable(f"NATS did not answer a replay: {error!r}") from error
    finally:
        for subscription in subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
