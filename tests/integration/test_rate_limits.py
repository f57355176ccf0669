"""The token buckets in Redis under a crowd: racing requests never overdraw a bucket (the
check and the take are one Lua script, on Redis's own clock)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from uuid_utils.compat import uuid4

from gateway.rate_limits import Limit, RateLimiter
from runtime.stack import Stack


async def test_two_hundred_racing_requests_take_no_more_than_the_bucket_and_its_refill(
    stack: Stack,
) -> None:
    # As many connections as requests, so that they truly race (the pool would queue them).
    client = aioredis.Redis.from_url(stack.redis_url, max_connections=200)
    try:
        limiter = RateLimiter(client)
        bucket = [(f"test:{uuid4().hex}", Limit(rate=1.0, burst=10.0))]
        started = time.monotonic()
        # Many connections at once: the calls reach Redis in another order than they began.
        waits = await asyncio.gather(*(limiter.take(bucket) for _ in range(200)))
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
    taken = sum(1 for wait in waits if wait == 0.0)
    assert 10 <= taken <= 10 + int(elapsed * 1.0) + 1, (taken, elapsed)
    assert all(wait > 0 for wait in waits if wait != 0.0)
