"""Read the log from a position: what is stored so far, or that and then every new event."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore.connection import ConnectionWatch
from eventstore.direct import direct_get
from eventstore.streams import EVENTS_STREAM, EVENTS_SUBJECTS
from eventstore.trace_context import TRACEPARENT
from schemas.envelope import EventEnvelope, RecordedEvent


async def read_log(
    client: NatsClient,
    *,
    from_sequence: int = 1,
    subject_filter: str = EVENTS_SUBJECTS,
    follow: bool = False,
    limit: int | None = None,
    timeout: float,
    watch: ConnectionWatch,
) -> AsyncIterator[RecordedEvent]:
    """Events from `from_sequence` on, in stream order.

    Without `follow` it ends at the last stored event or after `limit` events (batch direct
    get, for replay). With
    `follow` it goes on with new events as they are appended, through an ordered consumer that
    the client recreates from the last delivered sequence if it ever falls out of step.
    """
    if not follow:
        async for event in direct_get(
            client,
            subject_filter,
            after_sequence=from_sequence - 1,
            limit=limit,
            timeout=timeout,
            watch=watch,
        ):
            yield event
        return
    subscription = await client.jetstream().subscribe(
        subject_filter,
        stream=EVENTS_STREAM,
        ordered_consumer=True,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(from_sequence, 1),
        ),
    )
    try:
        async for message in subscription.messages:
            yield RecordedEvent(
                sequence=message.metadata.sequence.stream,
                envelope=EventEnvelope.model_validate_json(message.data),
                traceparent=(message.headers or {}).get(TRACEPARENT),
            )
    finally:
        await subscription.unsubscribe()
