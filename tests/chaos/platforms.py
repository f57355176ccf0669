"""A platform of its own for a chaos test: its own NATS (one node or a cluster) and a fresh
PostgreSQL database, with the session's Redis, graph store and model server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from uuid_utils.compat import uuid4

from runtime.bootstrap import Platform, connect
from runtime.stack import Stack
from tests.passwords import cheap_hasher
from tests.servers import isolated_settings, scratch_dir


async def fresh_database(stack: Stack, prefix: str) -> str:
    """The URL of a new, empty database on the session's PostgreSQL."""
    database = f"{prefix}_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    return f"{stack.postgres_url.rsplit('/', 1)[0]}/{database}"


@contextlib.asynccontextmanager
async def own_platform(stack: Stack, prefix: str, **settings: Any) -> AsyncIterator[Platform]:
    """A platform whose NATS this test may kill at will (`settings` place and tune it)."""
    own = isolated_settings(
        scratch_dir(),
        postgres_url=await fresh_database(stack, prefix),
        redis_url=stack.redis_url,
        graph_url=stack.graph_url,
        ollama_host=stack.model_url,
        **settings,
    )
    servers = Stack(own)
    await servers.start()
    try:
        passwords = cheap_hasher()
        async with connect(own, servers, passwords=passwords) as platform:
            yield platform
    finally:
        await servers.stop()


def cli_environment(platform: Platform, **settings: str) -> dict[str, str]:
    """The environment that points `sutazai` at `platform`, every server given by URL;
    `settings` adds SUTAZAI_ variables by field name (`agent_ack_wait="3"`)."""
    stack = platform.stack
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUTAZAI_")}
    env.update(
        {
            "SUTAZAI_DATA_DIR": str(platform.settings.data_dir),
            "SUTAZAI_NATS_URL": stack.nats_url,
            "SUTAZAI_POSTGRES_URL": stack.postgres_url,
            "SUTAZAI_REDIS_URL": stack.redis_url,
            "SUTAZAI_GRAPH_URL": stack.graph_url,
            "OLLAMA_HOST": stack.model_url,
            "SUTAZAI_LOG_FORMAT": "json",
            **{f"SUTAZAI_{name.upper()}": value for name, value in settings.items()},
        }
    )
    return env
