"""An event no handler can decode is parked on its first delivery: never handed to the handler,
never retried (the same bytes fail the same way), and the events after it go on.

On a NATS of the test's own: an event of an unknown type on the session's log would stop every
projector that reads it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import pytest

from eventstore.dlq import parked_events
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM
from handlers.consumers import Delivered, Delivery
from runtime.bootstrap import stream_layout
from runtime.stack import Stack
from tests.consuming import consuming
from tests.servers import isolated_settings, scratch_dir
from tests.tasks import task_event

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


async def test_an_undecodable_event_is_parked_at_once_and_the_next_one_is_handled(
    own_store: EventStore,
) -> None:
    handled: list[str] = []
    later = asyncio.Event()

    async def handle(delivered: Delivered) -> None:
        handled.append(delivered.envelope.event_type)
        later.set()

    async with consuming(
        own_store,
        own_store.client.connected_url.geturl(),  # type: ignore[union-attr]
        consumer=CONSUMER,
        subject="sutazai.events.task.*.*",
        handle=handle,
        delivery=Delivery(attempts=4, first_delay=0.05, ack_wait=30.0),
    ) as broker:
        await broker.connection.flush()
        js = own_store.client.jetstream()
        for envelope in (
            task_event("TaskTeleported", {"to": "the moon"}),  # no such event type
            task_event("TaskAssigned", {"agent_id": "not a uuid"}),  # a known type, bad data
            task_event("TaskCancelled", {}),
        ):
            await js.publish(envelope.subject, envelope.model_dump_json().encode())
        await asyncio.wait_for(later.wait(), 10)

    assert handled == ["TaskCancelled"]
    parked = [p async for p in parked_events(own_store, CONSUMER)]
    assert [p.event_type for p in parked] == ["TaskTeleported", "TaskAssigned"]
    assert "UnknownEventType" in parked[0].error
    assert "validation error for TaskAssigned" in parked[1].error
    info = await own_store.client.jetstream().consumer_info(EVENTS_STREAM, CONSUMER)
    assert info.num_redelivered == 0  # parked on the first delivery, not after four
    assert info.num_ack_pending == 0
