"""How an agent consumes the log: a durable, explicit-ack pull consumer on a filtered subject of
`SUTAZAI_EVENTS`, with retries and backoff, then the DLQ.

Replicas of one agent share the durable consumer, so JetStream hands each event to one of them.
A handler that raises gets the event again (a NAK with a growing delay) up to `attempts`
deliveries; then the event is parked on `sutazai.dlq.<consumer>` with the error and
`give_up` runs (to fail the task with a typed error, say), and the event is acknowledged.

Replay (`sutazai dlq replay`): each consumer also answers requests on core NATS subject
`sutazai.replay.<consumer>` (a queue group, so one replica takes each). A request names a DLQ
entry; the replica reads the parked envelope from `SUTAZAI_DLQ`, runs the very same `handle`
on it and, if that succeeds, deletes the entry from the DLQ. Nothing is ever appended to
`SUTAZAI_EVENTS` (the log is immutable; an event is not re-published to be re-delivered), and the
handler's commands derive their ids from the event, so a replay of work half done before
changes nothing twice. The subject is outside `sutazai.dlq.>` on purpose: the DLQ stream would
otherwise capture the requests themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self

import structlog
from faststream import AckPolicy
from faststream.nats import JStream, NatsMessage, NatsRouter, PullSub
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ValidationError

from eventstore.dlq import NotParked, park, parked_event, release
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM
from schemas.envelope import EventEnvelope, RecordedEvent
from schemas.events import UnknownEventType, decode_event

log = structlog.get_logger(__name__)

REPLAY_SUBJECT_PREFIX = "sutazai.replay"


@dataclass(frozen=True)
class Delivered:
    """An event as an agent gets it: the envelope (ids, actor, causation: what its commands are
    caused by) and the data decoded once into the domain's event class, upcast to the version
    the code knows, for a handler to `match` on."""

    envelope: EventEnvelope
    event: BaseModel

    @classmethod
    def of(cls, envelope: EventEnvelope) -> Self:
        """Decode `envelope`; raises `UnknownEventType` or pydantic's `ValidationError`."""
        event = decode_event(envelope.event_type, envelope.schema_version, dict(envelope.data))
        return cls(envelope, event)


Handle = Callable[[Delivered], Awaitable[None]]
GiveUp = Callable[[Delivered, BaseException], Awaitable[None]]

UNDECODABLE = (UnknownEventType, ValidationError)
"""An event no handler can read: the same bytes fail the same way, so it is parked at once."""


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


def replay_subject(consumer: str) -> str:
    """`sutazai.replay.<consumer>`: where a consumer takes requests to replay its DLQ entries."""
    return f"{REPLAY_SUBJECT_PREFIX}.{consumer}"


class ReplayRequest(BaseModel):
    """Replay the event parked at this DLQ sequence through its consumer's handler."""

    dlq_sequence: int


class ReplayOutcome(BaseModel):
    """How a replay went: `ok` (handled, and taken off the DLQ) or the handler's error."""

    ok: bool
    dlq_sequence: int
    error: str | None = None


async def _nothing(delivered: Delivered, error: BaseException) -> None:
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
    One event is fetched at a time: with more, nats-py waits out the fetch's timeout for the
    rest of the batch, and a new event would wait up to a second.
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
        deliveries = int(raw.metadata.num_delivered)
        recorded = RecordedEvent(sequence=int(raw.metadata.sequence.stream), envelope=envelope)
        try:
            delivered = Delivered.of(envelope)
        except UNDECODABLE as error:
            await park(store, consumer, recorded, error)
            log.error(
                "agent.undecodable", consumer=consumer, event_type=envelope.event_type,
                error=repr(error),
            )  # fmt: skip
            await message.ack()
            return
        try:
            await handle(delivered)
        except asyncio.CancelledError:
            # Stopped at the drain deadline: hand the event back now, not at ack_wait. Bounded:
            # the server may be the reason we are stopping.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(message.nack(), 1.0)
            raise
        except Exception as error:
            if deliveries < delivery.attempts:
                delay = delivery.backoff(deliveries)
                log.warning(
                    "agent.retry",
                    consumer=consumer,
                    event_type=envelope.event_type,
                    delivered=deliveries,
                    delay=delay,
                    error=repr(error),
                )
                await message.nack(delay=delay)
                return
            await park(store, consumer, recorded, error)
            log.error(
                "agent.gave_up",
                consumer=consumer,
                event_type=envelope.event_type,
                error=repr(error),
            )
            await give_up(delivered, error)
        await message.ack()

    async def on_replay(body: Any, message: NatsMessage) -> dict[str, Any]:
        outcome = await _replay(store, consumer, handle, message.raw_message.data)
        return outcome.model_dump(mode="json")  # FastStream sends it as the JSON reply

    on_message.__name__ = consumer.replace("-", "_")
    on_replay.__name__ = f"replay_{on_message.__name__}"
    router.subscriber(
        subject,
        stream=JStream(EVENTS_STREAM, declare=False),
        durable=consumer,
        config=config,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
    )(on_message)
    router.subscriber(replay_subject(consumer), queue=f"{consumer}-replay")(on_replay)


async def _replay(store: EventStore, consumer: str, handle: Handle, body: bytes) -> ReplayOutcome:
    """Run `handle` on one parked event of `consumer`; release the entry if it succeeded."""
    try:
        sequence = ReplayRequest.model_validate_json(body).dlq_sequence
    except ValidationError as error:
        return ReplayOutcome(ok=False, dlq_sequence=0, error=f"not a replay request: {error}")
    try:
        parked = await parked_event(store, sequence)
    except NotParked as missing:
        return ReplayOutcome(ok=False, dlq_sequence=sequence, error=str(missing))
    if parked.consumer != consumer:
        return ReplayOutcome(
            ok=False,
            dlq_sequence=sequence,
            error=f"DLQ sequence {sequence} belongs to {parked.consumer}, not {consumer}",
        )
    try:
        await handle(Delivered.of(parked.envelope))
    except Exception as error:
        log.warning(
            "agent.replay_failed",
            consumer=consumer,
            event_type=parked.event_type,
            sequence=parked.stream_sequence,
            error=repr(error),
        )
        return ReplayOutcome(ok=False, dlq_sequence=sequence, error=repr(error)[:2_000])
    await release(store, sequence)
    log.info(
        "agent.replayed",
        consumer=consumer,
        event_type=parked.event_type,
        sequence=parked.stream_sequence,
    )
    return ReplayOutcome(ok=True, dlq_sequence=sequence)
