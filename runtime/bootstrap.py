"""The composition root: the one place that builds every client and hands it down."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import falkordb.asyncio
import nats
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from runtime.settings import Settings
from runtime.stack import Stack


@dataclass(frozen=True)
class Platform:
    """Every client the platform's parts need, built once from one `Settings`."""

    settings: Settings
    stack: Stack
    nats: NatsClient
    jetstream: JetStreamContext
    postgres: asyncpg.Pool
    redis: aioredis.Redis
    graph: falkordb.asyncio.FalkorDB


@contextlib.asynccontextmanager
async def connect(settings: Settings, stack: Stack) -> AsyncIterator[Platform]:
    """Connect to the servers of a started stack; close every client on exit."""
    async with contextlib.AsyncExitStack() as resources:
        nats_client = await nats.connect(stack.nats_url, name="sutazai")
        resources.push_async_callback(nats_client.drain)
        postgres = await asyncpg.create_pool(stack.postgres_url, min_size=1, max_size=10)
        resources.push_async_callback(postgres.close)
        redis_client = aioredis.Redis.from_url(stack.redis_url)
        resources.push_async_callback(redis_client.aclose)
        graph = falkordb.asyncio.FalkorDB.from_url(stack.graph_url)
        resources.push_async_callback(graph.connection.aclose)
        yield Platform(
            settings=settings,
            stack=stack,
            nats=nats_client,
            jetstream=nats_client.jetstream(),
            postgres=postgres,
            redis=redis_client,
            graph=graph,
        )


@contextlib.asynccontextmanager
async def run_platform(settings: Settings) -> AsyncIterator[Platform]:
    """Start the stack, connect to it, and tear both down in reverse on exit."""
    stack = Stack(settings)
    await stack.start()
    try:
        async with connect(settings, stack) as platform:
            yield platform
    finally:
        await stack.stop()
