"""An event no handler can decode is parked on its first delivery: never handed to the handler,
never retried (the same bytes fail the same way), and the events after it go on.

On a NATS of the test's own: an event of an unknown type on the session's log would stop every
projector that reads it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from faststream.nats import NatsBroker, NatsRouter
from uuid_utils.compat import uuid4, uuid7

from eventstore.dlq import parked_events
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM
from handlers.consumers import Delivered, Delivery, consume
from runtime.bootstrap import stream_layout
from runtime.stack import Stack
from schemas.envelope import Actor, EventEnvelope
from tests.servers import isolated_settings, scratch_dir

CONSUMER = "undecodable-test"


@pytest.fixture
async def own_store() -> AsyncIterator[EventStore]:
    root = scratch_dir()
    settings = isolated_settings(root)
    stack = Stack(settings)
    nats = stack["nats"]
    try:
        await nats.start()
        store = await EventStore.connect(stack.nats_url, timeout=5.0, name=CONSUMER)
        await store.setup(stream_layout(settings))
        try:
            yield store
        finally:
            await store.client.close()
    finally:
        await nats.stop()
        shutil.rmtree(root, ignore_errors=True)


def _envelope(event_type: str, data: dict[str, object]) -> EventEnvelope:
    return EventEnvelope.model_validate(
        {
            "event_id": str(uuid4()),
            "event_type": event_type,
            "schema_version": 1,
            "aggregate_type": "task",
            "aggregate_id": str(uuid7()),
            "aggregate_version": 1,
            "occurred_at": datetime.now(UTC),
            "actor": Actor(id="test", kind="system"),
            "command_id": f"c-{uuid4().hex}",
            "correlation_id": "undecodable-test",
            "data": data,
        }
    )


async def test_an_undecodable_event_is_parked_at_once_and_the_next_one_is_handled(
    own_store: EventStore,
) -> None:
    handled: list[str] = []
    later = asyncio.Event()

    async def handle(delivered: Delivered) -> None:
        handled.append(delivered.envelope.event_type)
        later.set()

    router = NatsRouter()
    consume(
        router,
        own_store,
        consumer=CONSUMER,
        subject="sutazai.events.task.*.*",
        handle=handle,
        delivery=Delivery(attempts=4, first_delay=0.05, ack_wait=30.0),
    )
    broker = NatsBroker(own_store.client.connected_url.geturl())  # type: ignore[union-attr]
    broker.include_router(router)
    await broker.start()
    try:
        await broker.connection.flush()
        js = own_store.client.jetstream()
        for envelope in (
            _envelope("TaskTeleported", {"to": "the moon"}),  # no such event type
            _envelope("TaskAssigned", {"agent_id": "not a uuid"}),  # a known type, bad data
            _envelope("TaskCancelled", {}),
        ):
            await js.publish(envelope.subject, envelope.model_dump_json().encode())
        await asyncio.wait_for(later.wait(), 10)
    finally:
        await broker.stop()

    assert handled == ["TaskCancelled"]
    parked = [p async for p in parked_events(own_store, CONSUMER)]
    assert [p.event_type for p in parked] == ["TaskTeleported", "TaskAssigned"]
    assert "UnknownEventType" in parked[0].error
    assert "validation error for TaskAssigned" in parked[1].error
    info = await own_store.client.jetstream().consumer_info(EVENTS_STREAM, CONSUMER)
    assert info.num_redelivered == 0  # parked on the first delivery, not after four
    assert info.num_ack_pending == 0
