"""The gateway's part of the composition root: its services, limits, admin, and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from uuid import UUID

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from gateway.app import GatewayLimits, ReadinessCheck, build_app, probe_routes
from gateway.auth import Tokens
from gateway.context import GatewayServices
from gateway.loop_lag import LoopLag
from gateway.rate_limits import Limit, RateLimiter
from handlers.background import stop_task
from handlers.document_index import Chunk, DocumentIndex
from handlers.model_port import ModelError
from projections.audit import LogAudit
from projections.graph.queries import GraphQueries
from projections.runtime import ProjectionLagging, wait_for_sequence
from runtime.bootstrap import Platform, bounded, model_port
from runtime.settings import LOOPBACK, Settings
from schemas.commands import CommandRefused, CommandRequest
from schemas.envelope import SYSTEM


def readiness_checks(platform: Platform) -> dict[str, ReadinessCheck]:
    """One check per dependency of the gateway, named as /readyz reports them."""

    async def nats_answers() -> None:
        # A flush while reconnecting only queues its ping; ask whether we are connected first.
        if not platform.nats.is_connected:
            raise ConnectionError("not connected to NATS")
        await platform.nats.flush(timeout=1)

    async def postgres_answers() -> None:
        await platform.postgres.fetchval("SELECT 1")

    async def redis_answers() -> None:
        await platform.redis.ping()

    async def graph_answers() -> None:
        await platform.graph.ping()

    async def parts_ready() -> None:
        # Starting or draining parts of this process (projections, agents, commands, gateway).
        waiting = platform.readiness.not_ready()
        if waiting:
            raise PartsNotLive(f"not ready: {', '.join(waiting)}")

    return {
        "nats": nats_answers,
        "postgres": postgres_answers,
        "redis": redis_answers,
        "graph": graph_answers,
        "parts": parts_ready,
    }


class PartsNotLive(RuntimeError):
    """A part of the process is starting or draining."""


GATEWAY = "gateway"
"""This part of a process, as readiness names it."""


def jwt_secret(settings: Settings) -> str:
    """The key that signs access tokens: from settings, else made once and kept (mode 600)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = settings.resolved_data_dir / "gateway" / "jwt-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting at once, one writes and both read the same key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def gateway_services(platform: Platform) -> GatewayServices:
    """What the gateway's resolvers use, wired from the platform's clients."""
    settings = platform.settings

    async def wait_for_projection(read_model: str, sequence: int) -> bool:
        try:
            await wait_for_sequence(
                platform.postgres, read_model, sequence, timeout=settings.projection_wait_seconds
            )
        except ProjectionLagging:
            return False
        return True

    return GatewayServices(
        postgres=platform.postgres,
        store=platform.store,
        commands=platform.commands,
        tokens=Tokens(
            platform.redis,
            jwt_secret(settings),
            access_seconds=settings.access_token_seconds,
            refresh_seconds=settings.refresh_token_seconds,
        ),
        passwords=platform.passwords,
        nobody_hash=platform.passwords.hash(secrets.token_hex(16)),
        audit=LogAudit(platform.store),
        graph=GraphQueries(platform.graph),
        documents=_DocumentSearch(DocumentIndex(platform.vectors, model_port(platform, None))),
        wait_for_projection=wait_for_projection,
    )


class _DocumentSearch:
    """The gateway's view of the document index: a model that is down is a ConnectionError."""

    def __init__(self, index: DocumentIndex) -> None:
        self._index = index

    async def search(self, query: str, *, k: int, owner_id: UUID | None) -> list[Chunk]:
        await self._index.ensure_collection()
        try:
            return await self._index.search(query, k=k, owner_id=owner_id)
        except ModelError as error:
            raise ConnectionError(f"searching needs the model server: {error}") from error


def gateway_limits(settings: Settings) -> GatewayLimits:
    """The gateway's limits from settings."""
    return GatewayLimits(
        per_user=Limit(settings.rate_limit_per_user, settings.rate_limit_burst),
        per_ip=Limit(settings.rate_limit_per_ip, settings.rate_limit_burst),
        max_request_bytes=settings.max_request_bytes,
        max_depth=settings.max_query_depth,
        max_tokens=settings.max_query_tokens,
        max_aliases=settings.max_query_aliases,
        max_in_flight=settings.gateway_max_in_flight,
        admission_wait=settings.gateway_admission_wait,
        max_loop_lag=settings.gateway_max_loop_lag,
    )


BOOTSTRAP_ADMIN_COMMAND = "bootstrap-admin"


async def ensure_admin(platform: Platform) -> str | None:
    """Register the bootstrap admin on first start.

    Returns the password when this call created the admin with a generated one (to be shown
    once); None when the admin existed already or its password came from settings.
    """
    settings = platform.settings
    given = settings.admin_password.get_secret_value() if settings.admin_password else None
    password = given or secrets.token_urlsafe(12)
    reply = await platform.commands.dispatch(
        "RegisterUser",
        CommandRequest(
            command_id=BOOTSTRAP_ADMIN_COMMAND,
            actor=SYSTEM,
            reason="bootstrap admin on first start",
            payload={
                "email": settings.admin_email,
                "username": settings.admin_username,
                "password": password,
                "role": "admin",
            },
        ),
    )
    if isinstance(reply, CommandRefused):
        raise RuntimeError(f"could not create the bootstrap admin: {reply.error.message}")
    if reply.duplicate:
        return None
    await wait_for_sequence(
        platform.postgres, "users", reply.sequence, timeout=settings.projection_wait_seconds
    )
    return None if given else password


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process that serves the gateway owns the
    signals and stops its parts in order. uvicorn's would raise a caught signal again once it
    has stopped, which `sutazai up` would take for a second Ctrl-C (stop now, skip the drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    *,
    name: str,
    host: str,
    port: int,
    drain_timeout: float,
    ws_compression: bool = False,
) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on `host`:`port` until the block ends; yields the URL it answers
    on from this machine. Requests in flight get the drain deadline when it ends."""
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
            ws_per_message_deflate=ws_compression,
            # Requests in flight get the drain deadline; open websockets are closed at once
            # (close code 1012, "service restart": a client resumes elsewhere or later).
            timeout_graceful_shutdown=max(1, math.ceil(drain_timeout)),
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # re-raises why it could not start
            raise RuntimeError(f"the {name} could not listen on {host}:{port}")
        await asyncio.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        # uvicorn bounds its own shutdown by the drain deadline; this covers a hang around it.
        await bounded(name, lambda: asyncio.shield(serving), 2 * drain_timeout + 1)
        if not serving.done():
            await stop_task(serving)


@contextlib.asynccontextmanager
async def serve_gateway(platform: Platform, port: int) -> AsyncIterator[str]:
    """Serve the gateway on `gateway_host`:`port` until the block ends; yields its local URL."""
    readiness = platform.readiness
    readiness.expect(GATEWAY)
    loop_lag = LoopLag()
    app = build_app(
        gateway_services(platform),
        RateLimiter(platform.redis),
        gateway_limits(platform.settings),
        readiness_checks(platform),
        registry=platform.metrics,
        tracing=platform.tracing,
        loop_lag=loop_lag,
    )
    settings = platform.settings
    loop_lag.start()
    try:
        async with serve_asgi(
            app,
            name="gateway",
            host=settings.gateway_host,
            port=port,
            drain_timeout=settings.drain_timeout,
            ws_compression=settings.gateway_ws_compression,
        ) as url:
            # What startup made (modules, the schema, clients) lives as long as the process:
            # out of the collector's sight, a full collection no longer walks it
            # (bench/subscriptions.py saw 0.4-0.5 s pauses of the gateway, pushes late behind).
            gc.freeze()
            readiness.ready(GATEWAY)
            try:
                yield url
            finally:
                readiness.draining(GATEWAY)
    finally:
        await loop_lag.stop()


@contextlib.asynccontextmanager
async def serve_probes(platform: Platform) -> AsyncIterator[str | None]:
    """`/healthz`, `/readyz` and `/metrics` on `SUTAZAI_METRICS_PORT` for a process without the
    gateway (`agents run`, `projections run`); nothing when the port is not set."""
    settings = platform.settings
    if settings.metrics_port is None:
        yield None
        return
    app = Starlette(routes=probe_routes(readiness_checks(platform), platform.metrics))
    async with serve_asgi(
        app,
        name="probes",
        host=settings.gateway_host,
        port=settings.metrics_port,
        drain_timeout=settings.drain_timeout,
    ) as url:
        yield url
