"""The composition root: the one place that builds every client and hands it down."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import ollama
import redis.asyncio as aioredis
import structlog
from argon2 import PasswordHasher
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry
from purgatory import AsyncCircuitBreakerFactory
from qdrant_client import AsyncQdrantClient

from commands.bus import BusPolicy, CommandBus, CommandContext
from commands.dispatch import CommandDispatcher
from commands.preparation import CommandPreparation, Limits
from domain.model_call import RecordModelCall
from eventstore.blobs import BlobStore
from eventstore.metrics import AppendMetrics
from eventstore.store import EventStore
from eventstore.streams import LEASES_BUCKET, StreamLayout
from handlers.background import repeating, stop_task
from handlers.command_endpoint import command_endpoint
from handlers.metrics import AgentMetrics, ModelMetrics
from handlers.model_port import ModelPolicy, ModelPort
from handlers.presence import AgentCard
from projections.graph.port import FalkorGraph, GraphPort, Neo4jGraph
from projections.graph.runner import GraphProjection
from projections.lease import LeaseTerms, under_lease
from projections.metrics import ProjectionMetrics
from projections.migrate import migrate
from projections.read_models import postgres_projectors
from projections.runtime import ProjectionRunner, Projector
from runtime.command_metrics import CommandMetrics
from runtime.readiness import Readiness
from runtime.settings import Settings
from runtime.stack import Stack
from runtime.tracing import shut_down, tracer_provider
from schemas.envelope import Actor, EventEnvelope

log = structlog.get_logger(__name__)

PROJECTIONS = "projections"
COMMANDS = "commands"
"""Parts of a process, as readiness names them."""


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
    metrics: CollectorRegistry
    """The process's Prometheus metrics (served by the gateway's /metrics)."""
    readiness: Readiness
    """Which parts of this process are live (what /readyz reports)."""
    tracing: TracerProvider
    """Where this process's spans go (a no-op provider unless tracing is configured)."""
    agent_metrics: AgentMetrics
    model_metrics: ModelMetrics
    """The agents' and model calls' metrics, on `metrics` (one of each per process)."""


def stream_layout(settings: Settings) -> StreamLayout:
    """The streams and buckets as the settings tune them."""
    return StreamLayout(
        duplicate_window=settings.duplicate_window,
        heartbeat_ttl=settings.heartbeat_ttl,
        replicas=settings.replicas,
        lease_ttl=settings.projection_lease_seconds,
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
    settings: Settings,
    store: EventStore,
    passwords: PasswordHasher,
    metrics: CollectorRegistry | None = None,
    tracing: TracerProvider | None = None,
) -> CommandDispatcher:
    bus = CommandBus(
        store,
        observer=CommandMetrics(metrics) if metrics is not None else None,
        tracer=tracing.get_tracer("sutazai.commands") if tracing is not None else None,
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
    settings: Settings,
    stack: Stack,
    *,
    passwords: PasswordHasher | None = None,
    part: str = "platform",
    tracing: TracerProvider | None = None,
) -> AsyncIterator[Platform]:
    """Connect to the servers of a started stack; close every client on exit.

    `passwords` sets argon2's cost (the library's defaults unless given). `part` names the
    process in its traces; `tracing` replaces the provider the settings describe (and is then
    the caller's to shut down).
    """
    passwords = passwords or PasswordHasher()
    deadline = settings.drain_timeout
    async with contextlib.AsyncExitStack() as resources:
        if tracing is None:
            tracing = tracer_provider(settings, part)
            resources.callback(shut_down, tracing)
        metrics = CollectorRegistry()
        store = await EventStore.connect(
            stack.nats_url,
            timeout=settings.store_timeout,
            tracer=tracing.get_tracer("sutazai.eventstore"),
            metrics=AppendMetrics(metrics),
        )
        nats_client = store.client
        resources.push_async_callback(close_nats, nats_client, deadline)
        await store.setup(stream_layout(settings))
        postgres = await asyncpg.create_pool(stack.postgres_url, min_size=1, max_size=10)
        resources.push_async_callback(close_pool, postgres, deadline)
        await migrate(postgres)
        redis_client = aioredis.Redis.from_url(stack.redis_url)
        resources.push_async_callback(bounded, "redis", redis_client.aclose, deadline)
        graph: GraphPort
        if settings.neo4j_url:
            neo4j = Neo4jGraph(settings.neo4j_url, auth=settings.neo4j_auth)
            resources.push_async_callback(bounded, "neo4j", neo4j.close, deadline)
            graph = neo4j
        else:
            graph_client = aioredis.Redis.from_url(stack.graph_url)
            resources.push_async_callback(bounded, "graph", graph_client.aclose, deadline)
            graph = FalkorGraph(graph_client)
        vectors = _vectors(settings)
        resources.push_async_callback(bounded, "qdrant", vectors.close, deadline)
        yield Platform(
            settings=settings,
            stack=stack,
            nats=nats_client,
            store=store,
            commands=_dispatcher(settings, store, passwords, metrics, tracing),
            postgres=postgres,
            redis=redis_client,
            graph=graph,
            passwords=passwords,
            vectors=vectors,
            metrics=metrics,
            breakers=AsyncCircuitBreakerFactory(
                default_threshold=settings.model_breaker_threshold,
                default_ttl=settings.model_breaker_seconds,
                exclude=[(ollama.ResponseError, lambda error: error.status_code < 500)],
            ),
            readiness=Readiness(),
            tracing=tracing,
            agent_metrics=AgentMetrics(metrics),
            model_metrics=ModelMetrics(metrics),
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
        metrics=platform.model_metrics,
        tracer=platform.tracing.get_tracer("sutazai.model"),
    )


@contextlib.asynccontextmanager
async def serve_commands(platform: Platform) -> AsyncIterator[NatsBroker]:
    """Answer `sutazai.cmd.<CommandName>` requests until the block ends (ready once subscribed;
    on exit, requests in flight get up to the drain deadline)."""
    readiness = platform.readiness
    readiness.expect(COMMANDS)
    async with command_endpoint(
        platform.stack.nats_url, platform.commands, drain_timeout=platform.settings.drain_timeout
    ) as broker:
        readiness.ready(COMMANDS)
        try:
            yield broker
        finally:
            readiness.draining(COMMANDS)


METRICS_EVERY = 5.0
"""Seconds between two readings of the projection checkpoints for /metrics."""

PROJECTORS: tuple[Projector, ...] = tuple(postgres_projectors())
"""Every Postgres read model the platform keeps."""


@contextlib.asynccontextmanager
async def run_projections(
    settings: Settings,
    store: EventStore,
    postgres: asyncpg.Pool,
    only: Sequence[str] = (),
    graph: GraphPort | None = None,
    readiness: Readiness | None = None,
    metrics: CollectorRegistry | None = None,
    tracing: TracerProvider | None = None,
) -> AsyncIterator[list[ProjectionRunner]]:
    """Keep every projector (or those named) applying new events until the block ends.

    The graph projection runs too when a graph is given. Entered once every runner is live
    (listening on the server, the log read once); on exit each finishes the batch it is in,
    up to the drain deadline, and is then cancelled (its transaction rolls back).
    """
    stop = asyncio.Event()
    counted = ProjectionMetrics(metrics) if metrics is not None else None
    tracer = tracing.get_tracer("sutazai.projections") if tracing is not None else None
    runners = [
        ProjectionRunner(
            store,
            postgres,
            projector,
            batch_size=settings.projection_batch_size,
            poison_policy="skip" if settings.poison_policy == "skip" else "stop",
            metrics=counted,
            tracer=tracer,
        )
        for projector in PROJECTORS
        if not only or projector.name in only
    ]
    workers: list[tuple[str, Callable[..., Coroutine[Any, Any, None]]]] = [
        (runner.projector.name, runner.run) for runner in runners
    ]
    if graph is not None:
        projection = GraphProjection(
            store,
            graph,
            batch_size=settings.projection_batch_size,
            metrics=counted,
            tracer=tracer,
        )
        workers.append(("graph", projection.run))
    # Each projector applies in one process at a time; the same projector elsewhere waits.
    bucket = await store.bucket(LEASES_BUCKET)
    terms = LeaseTerms(settings.projection_lease_seconds, f"{socket.gethostname()}:{os.getpid()}")
    workers = [
        (name, under_lease(run, bucket, f"projector.{name}", terms)) for name, run in workers
    ]
    if readiness is not None:
        readiness.expect(PROJECTIONS)
    lives = [asyncio.Event() for _ in workers]
    running = [
        asyncio.create_task(run(stop, live=live), name=f"projection.{name}")
        for (name, run), live in zip(workers, lives, strict=True)
    ]
    try:
        await _until_live(lives, running, timeout=settings.startup_timeout)
        if readiness is not None:
            readiness.ready(PROJECTIONS)
        if counted is None:
            yield runners
        else:
            names = [runner.projector.name for runner in runners]
            refresh = functools.partial(counted.refresh, store, postgres, names)
            async with repeating("projection.metrics", refresh, every=METRICS_EVERY):
                yield runners
    finally:
        if readiness is not None:
            readiness.draining(PROJECTIONS)
        stop.set()
        await drain(running, settings.drain_timeout)


async def _until_live(
    lives: Sequence[asyncio.Event], running: Sequence[asyncio.Task[None]], *, timeout: float
) -> None:
    """Wait until every runner is live; a runner that ended first (a bug) fails the start."""
    waiting: asyncio.Future[Any] = asyncio.gather(*(live.wait() for live in lives))
    watched: list[asyncio.Future[Any]] = [waiting, *running]
    try:
        done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if waiting in done:
        return
    for task in running:
        if task.done():
            task.result()  # re-raises why it stopped
            raise RuntimeError(f"{task.get_name()} ended before it was live")
    raise TimeoutError(f"projections not live within {timeout:g}s")


async def drain(running: Sequence[asyncio.Task[Any]], timeout: float) -> None:
    """Let `running` end by themselves up to `timeout`, then cancel what is left."""
    if not running:
        return
    _, pending = await asyncio.wait(running, timeout=timeout)
    if pending:
        log.warning("shutdown.cancelling", tasks=sorted(task.get_name() for task in pending))
    for task in pending:
        await stop_task(task)
    for task in running:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("shutdown.task_failed", task=task.get_name(), error=repr(task.exception()))


async def bounded(name: str, close: Callable[[], Awaitable[object]], timeout: float) -> None:
    """Close a client, giving up (logged) at `timeout`: a server that is gone cannot hold a stop."""
    try:
        await asyncio.wait_for(close(), timeout)
    except Exception as error:
        log.warning("shutdown.close_failed", client=name, error=repr(error))


async def close_nats(client: NatsClient, timeout: float) -> None:
    """Drain (deliver what is pending, flush what is published), else close at the deadline."""
    try:
        await asyncio.wait_for(client.drain(), timeout)
    except Exception as error:
        log.warning("shutdown.nats_drain_failed", error=repr(error))
    if not client.is_closed:
        await bounded("nats", client.close, timeout)


async def close_pool(pool: asyncpg.Pool, timeout: float) -> None:
    """Close the pool once its connections are back, else terminate them at the deadline."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except Exception as error:
        log.warning("shutdown.postgres_pool_terminated", error=repr(error))
        pool.terminate()


@contextlib.asynccontextmanager
async def connect_read_side(settings: Settings, stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    """Only the read side's database, migrated (for the projection commands of the CLI)."""
    pool = await asyncpg.create_pool(stack.postgres_url, min_size=1, max_size=2)
    try:
        await migrate(pool)
        yield pool
    finally:
        await pool.close()
