"""The composition root: the one place that builds every client and hands it down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import ollama
import redis.asyncio as aioredis
import uvicorn
from argon2 import PasswordHasher
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from purgatory import AsyncCircuitBreakerFactory
from qdrant_client import AsyncQdrantClient

from commands.bus import BusPolicy, CommandBus, CommandContext
from commands.dispatch import CommandDispatcher
from commands.preparation import CommandPreparation, Limits
from domain.model_call import RecordModelCall
from eventstore.blobs import BlobStore
from eventstore.store import EventStore
from eventstore.streams import StreamLayout
from gateway.app import GatewayLimits, ReadinessCheck, build_app
from gateway.auth import Tokens
from gateway.context import GatewayServices
from gateway.rate_limits import Limit, RateLimiter
from handlers.command_endpoint import command_endpoint
from handlers.document_index import Chunk, DocumentIndex
from handlers.model_port import ModelError, ModelPolicy, ModelPort
from handlers.presence import AgentCard
from projections.audit import LogAudit
from projections.graph.port import FalkorGraph, GraphPort, Neo4jGraph
from projections.graph.queries import GraphQueries
from projections.graph.runner import GraphProjection
from projections.migrate import migrate
from projections.read_models import postgres_projectors
from projections.runtime import ProjectionLagging, ProjectionRunner, Projector, wait_for_sequence
from runtime.settings import LOOPBACK, Settings
from runtime.stack import Stack
from schemas.commands import CommandRefused, CommandRequest
from schemas.envelope import SYSTEM, Actor, EventEnvelope


@dataclass(frozen=True)
class Platform:
    """Every client and service the platform's parts need, built once from one `Settings`."""

    settings: Settings
    stack: Stack
    nats: NatsClient
    store: EventStore
    commands: CommandDispatcher
    postgres: asyncpg.Pool
    redis: aioredis.Redis
    graph: GraphPort
    passwords: PasswordHasher
    vectors: AsyncQdrantClient
    breakers: AsyncCircuitBreakerFactory
    """One circuit per model server, shared by every agent of the process."""


def stream_layout(settings: Settings) -> StreamLayout:
    """The streams and buckets as the settings tune them."""
    return StreamLayout(
        duplicate_window=settings.duplicate_window, heartbeat_ttl=settings.heartbeat_ttl
    )


@contextlib.asynccontextmanager
async def connect_store(settings: Settings, stack: Stack) -> AsyncIterator[CommandDispatcher]:
    """Only the event store and the bus: what the event and task commands of the CLI need."""
    store = await EventStore.connect(
        stack.nats_url, timeout=settings.store_timeout, name="sutazai-cli"
    )
    try:
        await store.setup(stream_layout(settings))
        yield _dispatcher(settings, store, PasswordHasher())
    finally:
        await store.client.close()


def _dispatcher(
    settings: Settings, store: EventStore, passwords: PasswordHasher
) -> CommandDispatcher:
    bus = CommandBus(
        store,
        policy=BusPolicy(
            max_attempts=settings.command_attempts,
            snapshot_every=settings.snapshot_every,
            remembered_commands=settings.remembered_commands,
        ),
    )
    limits = Limits(
        max_payload_bytes=settings.max_payload_bytes,
        max_document_bytes=settings.max_document_bytes,
        inline_document_bytes=settings.inline_document_bytes,
    )
    return CommandDispatcher(bus, CommandPreparation(BlobStore(store), limits, passwords))


@contextlib.asynccontextmanager
async def connect(
    settings: Settings, stack: Stack, *, passwords: PasswordHasher | None = None
) -> AsyncIterator[Platform]:
    """Connect to the servers of a started stack; close every client on exit.

    `passwords` sets argon2's cost (the library's defaults unless given).
    """
    passwords = passwords or PasswordHasher()
    async with contextlib.AsyncExitStack() as resources:
        store = await EventStore.connect(stack.nats_url, timeout=settings.store_timeout)
        nats_client = store.client
        resources.push_async_callback(nats_client.drain)
        await store.setup(stream_layout(settings))
        postgres = await asyncpg.create_pool(stack.postgres_url, min_size=1, max_size=10)
        resources.push_async_callback(postgres.close)
        await migrate(postgres)
        redis_client = aioredis.Redis.from_url(stack.redis_url)
        resources.push_async_callback(redis_client.aclose)
        graph: GraphPort
        if settings.neo4j_url:
            neo4j = Neo4jGraph(settings.neo4j_url, auth=settings.neo4j_auth)
            resources.push_async_callback(neo4j.close)
            graph = neo4j
        else:
            graph_client = aioredis.Redis.from_url(stack.graph_url)
            resources.push_async_callback(graph_client.aclose)
            graph = FalkorGraph(graph_client)
        vectors = _vectors(settings)
        resources.push_async_callback(vectors.close)
        yield Platform(
            settings=settings,
            stack=stack,
            nats=nats_client,
            store=store,
            commands=_dispatcher(settings, store, passwords),
            postgres=postgres,
            redis=redis_client,
            graph=graph,
            passwords=passwords,
            vectors=vectors,
            breakers=AsyncCircuitBreakerFactory(
                default_threshold=settings.model_breaker_threshold,
                default_ttl=settings.model_breaker_seconds,
                exclude=[(ollama.ResponseError, lambda error: error.status_code < 500)],
            ),
        )


def _vectors(settings: Settings) -> AsyncQdrantClient:
    """Qdrant: a server when a URL is set, else the client's local mode (in memory or on disk)."""
    if settings.qdrant_url:
        return AsyncQdrantClient(url=settings.qdrant_url)
    location = settings.qdrant_location or str(settings.resolved_data_dir / "qdrant")
    if location == ":memory:":
        return AsyncQdrantClient(location=":memory:")
    return AsyncQdrantClient(path=location)


def model_port(platform: Platform, card: AgentCard | None) -> ModelPort:
    """A model port for one agent (or for the gateway's searches: no card), recording each call
    through the bus."""
    settings = platform.settings
    bus = platform.commands.bus
    actor = card.actor if card else Actor(id="sutazai", kind="agent")

    async def record(call: RecordModelCall, cause: EventEnvelope) -> None:
        context = CommandContext.caused_by(cause, actor, f"model-call.{call.purpose}")
        await bus.execute(call, context)

    policy = ModelPolicy(
        timeout=settings.model_timeout,
        attempts=settings.model_attempts,
        concurrency=settings.model_concurrency,
        breaker_threshold=settings.model_breaker_threshold,
        breaker_seconds=settings.model_breaker_seconds,
    )
    return ModelPort(
        ollama.AsyncClient(host=platform.stack.model_url, timeout=settings.model_timeout),
        record,
        agent_id=None if card is None else UUID(card.agent_id),
        chat_model=settings.chat_model,
        embed_model=settings.embed_model,
        policy=policy,
        breakers=platform.breakers,
    )


def serve_commands(platform: Platform) -> contextlib.AbstractAsyncContextManager[NatsBroker]:
    """Answer `sutazai.cmd.<CommandName>` requests until the block ends."""
    return command_endpoint(platform.stack.nats_url, platform.commands)


PROJECTORS: tuple[Projector, ...] = tuple(postgres_projectors())
"""Every Postgres read model the platform keeps."""


@contextlib.asynccontextmanager
async def run_projections(
    settings: Settings,
    store: EventStore,
    postgres: asyncpg.Pool,
    only: Sequence[str] = (),
    graph: GraphPort | None = None,
) -> AsyncIterator[list[ProjectionRunner]]:
    """Keep every projector (or those named) applying new events until the block ends.

    The graph projection runs too when a graph is given.
    """
    stop = asyncio.Event()
    runners = [
        ProjectionRunner(
            store,
            postgres,
            projector,
            batch_size=settings.projection_batch_size,
            poison_policy="skip" if settings.poison_policy == "skip" else "stop",
        )
        for projector in PROJECTORS
        if not only or projector.name in only
    ]
    running = [asyncio.create_task(runner.run(stop)) for runner in runners]
    if graph is not None:
        projection = GraphProjection(store, graph, batch_size=settings.projection_batch_size)
        running.append(asyncio.create_task(projection.run(stop)))
    try:
        yield runners
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)


@contextlib.asynccontextmanager
async def connect_read_side(settings: Settings, stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    """Only the read side's database, migrated (for the projection commands of the CLI)."""
    pool = await asyncpg.create_pool(stack.postgres_url, min_size=1, max_size=2)
    try:
        await migrate(pool)
        yield pool
    finally:
        await pool.close()


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

    return {
        "nats": nats_answers,
        "postgres": postgres_answers,
        "redis": redis_answers,
        "graph": graph_answers,
    }


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


@contextlib.asynccontextmanager
async def serve_gateway(platform: Platform, port: int) -> AsyncIterator[str]:
    """Serve the gateway on 127.0.0.1:`port` (uvicorn) until the block ends; yields its URL."""
    app = build_app(
        gateway_services(platform),
        RateLimiter(platform.redis),
        gateway_limits(platform.settings),
        readiness_checks(platform),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=LOOPBACK,
            port=port,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # re-raises why it could not start
            raise RuntimeError(f"the gateway could not listen on {LOOPBACK}:{port}")
        await asyncio.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        await serving
