"""Who is online, asked as often as the sweeps ask it, without wearing out the server."""

from __future__ import annotations

import asyncio
import time

from eventstore.store import EventStore
from eventstore.streams import AGENTS_BUCKET
from handlers.presence import LISTING_LINGER, agents_bucket, online_agents


async def test_listing_the_online_agents_leaves_no_consumer_behind(event_store: EventStore) -> None:
    """Each listing reads the bucket through a consumer; the server must drop it soon after, or
    a few sweeps a second reach the stream's consumer limit and every listing (so every
    assignment) fails."""
    bucket = await agents_bucket(event_store)
    js = event_store.client.jetstream()
    stream = f"KV_{AGENTS_BUCKET}"
    before = (await js.stream_info(stream)).state.consumer_count
    for _ in range(30):
        await online_agents(bucket)
    deadline = time.monotonic() + LISTING_LINGER + 15
    while (count := (await js.stream_info(stream)).state.consumer_count) > before:
        assert time.monotonic() < deadline, f"{count - before} listing consumers linger"
        await asyncio.sleep(0.25)
