"""`SUTAZAI_DLQ`: events a consumer gave up on, parked with the error, never lost silently."""

from __future__ import annotations

import nats.errors

from eventstore.errors import StoreUnavailable
from eventstore.store import EventStore
from schemas.envelope import RecordedEvent


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
        ack = await store.client.jetstream(timeout=store.timeout).publish(
            dlq_subject(consumer), event.envelope.model_dump_json().encode(), headers=headers
        )
    except nats.errors.Error as failure:
        raise StoreUnavailable(f"could not park an event on the DLQ: {failure!r}") from failure
    return int(ack.seq)
