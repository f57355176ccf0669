"""Read stored events by subject with JetStream batch direct get: no consumer per read."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.client import Client as NatsClient

from eventstore.connection import ConnectionWatch
from eventstore.errors import StoreUnavailable
from eventstore.streams import EVENTS_STREAM
from schemas.envelope import EventEnvelope, RecordedEvent

BATCH = 1_000
_END_OF_BATCH = "204"
_NOT_FOUND = "404"


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
    replies = await client.subscribe(inbox)
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
            await client.publish(api, json.dumps(request).encode(), reply=inbox)
            pending = 0
            while True:
                with watch.bounded("a read"):
                    message = await replies.next_msg(timeout=timeout)
                headers = message.headers or {}
                status = headers.get("Status")
                if status == _NOT_FOUND:
                    return
                if status == _END_OF_BATCH:
                    pending = int(headers.get("Nats-Num-Pending", "0"))
                    break
                if status is not None:
                    raise StoreUnavailable(f"direct get answered {status}: {headers}")
                sequence = int(headers["Nats-Sequence"])
                if up_to_sequence is not None and sequence > up_to_sequence:
                    return
                next_sequence = sequence + 1
                if remaining is not None:
                    remaining -= 1
                yield RecordedEvent(
                    sequence=sequence,
                    envelope=EventEnvelope.model_validate_json(message.data),
                )
            if pending == 0:
                return
    except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as error:
        raise StoreUnavailable(f"NATS did not answer a read: {error!r}") from error
    finally:
        with contextlib.suppress(nats.errors.Error):
            await replies.unsubscribe()
