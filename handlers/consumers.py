"""How an agent consumes the log: a durable, explicit-ack pull consumer on a filtered subject of
`SUTAZAI_EVENTS`, with retries and backoff, then the DLQ.

Replicas of one agent share the durable consumer, so JetStream hands each event to one of them.
A handler that raises gets the event again (a NAK with a growing delay) up to `attempts`
deliveries; then the event is parked on `sutazai.dlq.<consumer>` with the error and
`give_up` runs (to fail the task with a typed error, say), and the event is acknowledged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.nats import JStream, NatsMessage, NatsRouter, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore.dlq import park
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM
from schemas.envelope import EventEnvelope, RecordedEvent

log = structlog.get_logger(__name__)

Handle = Callable[[EventEnvelope], Awaitable[None]]
GiveUp = Callable[[EventEnvelope, BaseException], Awaitable[None]]


@dataclass(frozen=True)
class Delivery:
    """How an agent's consumer retries: deliveries before the DLQ, backoff, ack deadline."""

    attempts: int = 4
    first_delay: float = 0.5
    max_delay: float = 30.0
    ack_wait: float = 300.0
    """Seconds a replica may hold an event before JetStream gives it to another one."""

    def backoff(self, delivered: int) -> float:
        """The NAK delay after the `delivered`-th failed delivery."""
        return float(min(self.max_delay, self.first_delay * 2 ** (delivered - 1)))


async def _nothing(envelope: EventEnvelope, error: BaseException) -> None:
    return None


def consume(
    router: NatsRouter,
    store: EventStore,
    *,
    consumer: str,
    subject: str,
    handle: Handle,
    delivery: Delivery,
    give_up: GiveUp = _nothing,
) -> None:
    """Register `handle` for the events on `subject`, under the durable consumer `consumer`.

    A new consumer starts at new events: what came before it is the work of the sweeps.
    """
    config = ConsumerConfig(
        durable_name=consumer,
        filter_subject=subject,
        ack_policy=JsAckPolicy.EXPLICIT,
        ack_wait=delivery.ack_wait,
        deliver_policy=DeliverPolicy.NEW,
    )

    async def on_message(body: Any, message: NatsMessage) -> None:
        raw = message.raw_message
        envelope = EventEnvelope.model_validate_json(raw.data)
        delivered = int(raw.metadata.num_delivered)
        try:
            await handle(envelope)
        except Exception as error:
            if delivered < delivery.attempts:
                delay = delivery.backoff(delivered)
                log.warning(
                    "agent.retry",
                    consumer=consumer,
                    event=envelope.event_type,
                    delivered=delivered,
                    delay=delay,
                    error=repr(error),
                )
                await message.nack(delay=delay)
                return
            recorded = RecordedEvent(sequence=int(raw.metadata.sequence.stream), envelope=envelope)
            await park(store, consumer, recorded, error)
            log.error(
                "agent.gave_up", consumer=consumer, event=envelope.event_type, error=repr(error)
            )
            await give_up(envelope, error)
        await message.ack()

    on_message.__name__ = consumer.replace("-", "_")
    router.subscriber(
        subject,
        stream=JStream(EVENTS_STREAM, declare=False),
        durable=consumer,
        config=config,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
    )(on_message)
