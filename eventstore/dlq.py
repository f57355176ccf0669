"""`SUTAZAI_DLQ`: events a consumer gave up on, parked with the error, never lost silently.

An entry leaves the DLQ only when a replay of it succeeded (`release`): the DLQ is the list of
what is still owed, the log (`SUTAZAI_EVENTS`) is never touched by either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import nats.errors
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from eventstore.errors import StoreUnavailable
from eventstore.store import EventStore
from eventstore.streams import DLQ_STREAM, DLQ_SUBJECTS
from schemas.envelope import EventEnvelope, RecordedEvent


def dlq_subject(consumer: str) -> str:
    """`sutazai.dlq.<consumer>`."""
    return f"sutazai.dlq.{consumer}"


async def park(store: EventStore, consumer: str, event: RecordedEvent, error: BaseException) -> int:
    """Put the event on the DLQ with why it failed; returns its DLQ sequence.

    The message id makes parking the same event twice (a restart that fails again) one entry.
    """
    headers = {
        "Nats-Msg-Id": f"{consumer}:{event.sequence}",
        "Sutazai-Consumer": consumer,
        "Sutazai-Stream-Sequence": str(event.sequence),
        "Sutazai-Event-Type": event.envelope.event_type,
        "Sutazai-Error": repr(error)[:2_000],
    }
    try:
        ack = await store.jetstream().publish(
            dlq_subject(consumer), event.envelope.model_dump_json().encode(), headers=headers
        )
    except nats.errors.Error as failure:
        raise StoreUnavailable(f"could not park an event on the DLQ: {failure!r}") from failure
    return int(ack.seq)


class NotParked(LookupError):
    """No event is parked at that DLQ sequence (never was, or it was replayed and released)."""


@dataclass(frozen=True)
class ParkedEvent:
    """One event on the DLQ: which consumer gave up on it, why, and when."""

    dlq_sequence: int
    """Its sequence on `SUTAZAI_DLQ` (what `release` takes)."""
    consumer: str
    stream_sequence: int
    """The event's sequence on `SUTAZAI_EVENTS`."""
    event_type: str
    error: str
    parked_at: datetime | None
    envelope: EventEnvelope


def _parked(message: RawStreamMsg) -> ParkedEvent:
    headers = message.headers or {}
    envelope = EventEnvelope.model_validate_json(message.data or b"")
    return ParkedEvent(
        dlq_sequence=int(message.seq or 0),
        consumer=str(headers.get("Sutazai-Consumer") or (message.subject or "").split(".")[-1]),
        stream_sequence=int(headers.get("Sutazai-Stream-Sequence") or 0),
        event_type=str(headers.get("Sutazai-Event-Type") or envelope.event_type),
        error=str(headers.get("Sutazai-Error") or ""),
        parked_at=message.time,
        envelope=envelope,
    )


async def parked_events(
    store: EventStore, consumer: str | None = None
) -> AsyncIterator[ParkedEvent]:
    """Every event still parked (of one consumer, or of all), oldest first."""
    js = store.jetstream()
    subject = dlq_subject(consumer) if consumer else DLQ_SUBJECTS
    sequence = 1
    while True:
        try:
            message = await js.get_msg(
                DLQ_STREAM, seq=sequence, subject=subject, direct=True, next=True
            )
        except NotFoundError:
            return
        except nats.errors.Error as failure:
            raise StoreUnavailable(f"could not read the DLQ: {failure!r}") from failure
        yield _parked(message)
        sequence = int(message.seq or sequence) + 1


async def parked_event(store: EventStore, dlq_sequence: int) -> ParkedEvent:
    """The event parked at `dlq_sequence`, or `NotParked`."""
    js = store.jetstream()
    try:
        message = await js.get_msg(DLQ_STREAM, seq=dlq_sequence, direct=True)
    except NotFoundError as missing:
        raise NotParked(f"nothing is parked at DLQ sequence {dlq_sequence}") from missing
    except nats.errors.Error as failure:
        raise StoreUnavailable(f"could not read the DLQ: {failure!r}") from failure
    return _parked(message)


async def release(store: EventStore, dlq_sequence: int) -> None:
    """Take a replayed event off the DLQ (the event itself stays in the log, untouched)."""
    js = store.jetstream()
    try:
        await js.delete_msg(DLQ_STREAM, dlq_sequence)
    except NotFoundError:
        return  # released already
    except nats.errors.Error as failure:
        raise StoreUnavailable(f"could not release a DLQ entry: {failure!r}") from failure
