"""A broker that runs one handler on a durable consumer of the event log, as an agent would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.nats import NatsBroker, NatsRouter

from eventstore.store import EventStore
from handlers.consumers import Delivery, Handle, consume


@asynccontextmanager
async def consuming(
    store: EventStore,
    nats_url: str,
    *,
    consumer: str,
    subject: str,
    handle: Handle,
    delivery: Delivery,
) -> AsyncIterator[NatsBroker]:
    """A started broker on `nats_url` that hands the events on `subject` to `handle`, under the
    durable consumer `consumer`; stopped on the way out."""
    router = NatsRouter()
    consume(router, store, consumer=consumer, subject=subject, handle=handle, delivery=delivery)
    broker = NatsBroker(nats_url)
    broker.include_router(router)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
