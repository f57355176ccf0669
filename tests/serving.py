"""The platform as `sutazai up` runs it, in this process, for tests and benches that use it
through its gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from opentelemetry.trace import TracerProvider

from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import Platform, connect, run_projections
from runtime.gateway_wiring import ensure_admin, serve_gateway
from runtime.settings import Settings
from runtime.stack import Stack
from tests.passwords import cheap_hasher
from tests.servers import free_port


@contextlib.asynccontextmanager
async def serve_platform(
    settings: Settings,
    stack: Stack,
    *,
    agents: AgentOptions | None = None,
    tracing: TracerProvider | None = None,
) -> AsyncIterator[tuple[Platform, str]]:
    """Every projector and the graph projection, the admin account, the gateway on a free port
    and `agents` when given, traced into `tracing` when given; entered once every part is ready.
    Yields the platform and the gateway's URL."""
    # Argon2 at its cheapest: what runs on this checks the flow, not the hash's cost.
    passwords = cheap_hasher()
    async with (
        connect(settings, stack, passwords=passwords, tracing=tracing) as platform,
        run_projections(
            settings,
            platform.store,
            platform.postgres,
            graph=platform.graph,
            readiness=platform.readiness,
            metrics=platform.metrics,
            tracing=platform.tracing,
        ),
    ):
        await ensure_admin(platform)
        async with contextlib.AsyncExitStack() as parts:
            url = await parts.enter_async_context(serve_gateway(platform, free_port()))
            if agents is not None:
                await parts.enter_async_context(run_agents(platform, agents))
            await platform.readiness.wait(timeout=settings.startup_timeout)
            yield platform, url
