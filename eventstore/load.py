"""Read stored events by subject with JetStream batch direct get: no consumer per read."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from eventstore.connection import ConnectionWatch
from eventstore.errors import StoreUnavailable
from eventstore.streams import EVENTS_STREAM
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
) -> AsyncIterator[RecordedEvent]:
    """Stored events matching `subject_filter` after `after_sequence`, in stream order.

    All of them up to the end of the stream (or `up_to_sequence`), or the first `limit`.

    Answered by the stream's direct-get responders in batches of `BATCH`; a batch that ends
    with messages still pending is followed by the next one.
    """
    if not client.is_connected:
        raise StoreUnavailable("not connected to NATS")
    inbox = client.new_inbox()
    batch = _Batch()
    # A callback that collects a whole batch, rather than one awaited `next_msg` per message:
    # that costs a task and a timer per event, which dominated replays.
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
        with contextlib.suppress(nats.errors.Error):
            await replies.unsubscribe()


async def replay_bodies(
    client: NatsClient,
    *,
    from_sequence: int,
    up_to_sequence: int,
    timeout: float,
    watch: ConnectionWatch,
    stream: str = EVENTS_STREAM,
) -> AsyncIterator[tuple[int, bytes]]:
    """Every stored event body from `from_sequence` to `up_to_sequence`, with its sequence.

    For replays of the whole log: the server sends bodies without headers (whose parsing was
    most of a replay's cost) and each sequence is known by position, because the event stream
    refuses deletes and purges and so has no gaps. Each batch's last sequence, which the
    server does send, is checked against that count.
    """
    if not client.is_connected:
        raise StoreUnavailable("not connected to NATS")
    inbox = client.new_inbox()
    batch = _Batch()
    replies = await client.subscribe(inbox, cb=batch.collect)
    api = f"$JS.API.DIRECT.GET.{stream}"
    sequence = from_sequence
    try:
        while sequence <= up_to_sequence:
            size = min(BATCH, up_to_sequence - sequence + 1)
            request = {"seq": sequence, "next_by_subj": ">", "batch": size, "no_hdr": True}
            batch.expect()
            await client.publish(api, json.dumps(request).encode(), reply=inbox)
            with watch.bounded("a replay"):
                await asyncio.wait_for(batch.complete, timeout)
            messages, status, headers = batch.take()
            if status == _NOT_FOUND or not messages:
                return
            last = sequence + len(messages) - 1
            if status != _END_OF_BATCH or int(headers.get("Nats-Last-Sequence", "-1")) != last:
                raise StoreUnavailable(
                    f"replay from {sequence} expected to end at {last}, the server said {headers}"
                )
            for offset, message in enumerate(messages):
                yield sequence + offset, message.data
            sequence = last + 1
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as error:
        raise StoreUnavailable(f"NATS did not answer a replay: {error!r}") from error
    finally:
        with contextlib.suppress(nats.errors.Error):
            await replies.unsubscribe()
