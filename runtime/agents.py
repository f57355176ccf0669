"""The agents' part of the composition root: presence, model ports, the FastStream broker.

Every agent of a process shares one NatsBroker (one connection) and one circuit breaker per
model server; each registers itself, beats its heartbeat, and subscribes through its own router.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from faststream.nats.opentelemetry import NatsTelemetryMiddleware

from commands.bus import CommandBus
from domain.agent import AgentKind
from eventstore.blobs import BlobStore
from handlers.background import nats_broker, start_broker, stop_broker
from handlers.code_assistant import CAPABILITIES as CODE_CAPABILITIES
from handlers.code_assistant import CodeAssistant
from handlers.consumers import Delivery
from handlers.document_assistant import CAPABILITIES as DOCUMENT_CAPABILITIES
from handlers.document_assistant import DocumentAssistant
from handlers.document_index import DocumentIndex
from handlers.integrations.webhook import Webhooks
from handlers.metrics import CountedDeliveries
from handlers.model_port import ModelPort
from handlers.orchestrator import CAPABILITIES as ORCHESTRATOR_CAPABILITIES
from handlers.orchestrator import Orchestrator
from handlers.presence import AgentCard, agents_bucket, heartbeats, register
from handlers.system_monitor import SystemMonitor, probes_of
from handlers.task_coordinator import CoordinatorPolicy, TaskCoordinator
from handlers.task_work import TaskWorker
from runtime.bootstrap import Platform, model_port
from runtime.settings import Settings

AGENTS = "agents"
"""This part of a process, as readiness names it."""

AGENT_KINDS = (
    "task-coordinator",
    "code-assistant",
    "document-assistant",
    "orchestrator",
    "system-monitor",
)
"""The agents a process can run (`sutazai agents run --only ...`)."""


@dataclass(frozen=True)
class AgentOptions:
    """Which agents to run in this process, and under which replica name."""

    only: Sequence[str] = ()
    replica: str = ""
    """Distinguishes replicas of one agent: part of their agent names (default: the host)."""

    def runs(self, kind: str) -> bool:
        """Whether this process runs agents of `kind`."""
        return not self.only or kind in self.only


def webhooks(settings: Settings) -> Webhooks:
    """The webhooks `settings` configure (each process that runs agents runs them too)."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    delivery = Delivery(
        attempts=settings.webhook_attempts,
        first_delay=settings.webhook_backoff,
        max_delay=settings.webhook_max_backoff,
        ack_wait=settings.webhook_timeout + 30.0,
    )
    return Webhooks(
        settings.webhook_urls,
        secret.encode(),
        timeout=settings.webhook_timeout,
        delivery=delivery,
    )


def data_places(settings: Settings) -> dict[str, Path]:
    """The places whose disks the system monitor measures: the data directory (JetStream,
    the embedded servers) and PostgreSQL's, when it lives elsewhere."""
    places = {"data": settings.resolved_data_dir}
    if settings.postgres_data_dir is not None:
        places["postgres"] = settings.postgres_data_dir.expanduser().resolve()
    return places


@contextlib.asynccontextmanager
async def run_agents(platform: Platform, options: AgentOptions) -> AsyncIterator[list[AgentCard]]:
    """Run the chosen agents until the block ends; yields the cards of those registered."""
    settings = platform.settings
    bus: CommandBus = platform.commands.bus
    replica = options.replica or socket.gethostname().split(".")[0]
    drain_timeout = settings.drain_timeout
    broker = nats_broker(
        platform.stack.nats_url,
        drain_timeout=drain_timeout,
        middlewares=(
            # Spans that continue each event's trace (its `traceparent` header), and counts.
            NatsTelemetryMiddleware(tracer_provider=platform.tracing),
            CountedDeliveries(platform.agent_metrics),
        ),
    )
    delivery = Delivery(attempts=settings.agent_attempts, ack_wait=settings.agent_ack_wait)
    cards: list[AgentCard] = []
    readiness = platform.readiness
    readiness.expect(AGENTS)
    async with contextlib.AsyncExitStack() as running:
        stopped = False

        async def stop_consuming() -> None:
            # Once: it runs first on a normal exit, and last if starting failed half way.
            nonlocal stopped
            if not stopped:
                stopped = True
                readiness.draining(AGENTS)
                await stop_broker(broker, drain_timeout=drain_timeout)

        running.push_async_callback(stop_consuming)

        async def enlist(name: str, kind: AgentKind, capabilities: list[str]) -> AgentCard:
            card = await register(
                bus, name=name, kind=kind, capabilities=capabilities, model=settings.chat_model
            )
            cards.append(card)
            return card

        async def enlist_worker(
            agent: str, kind: AgentKind, capabilities: list[str]
        ) -> tuple[TaskWorker, ModelPort]:
            """Register a replica of a task-taking agent: its worker and its model port."""
            card = await enlist(f"{agent}-{replica}", kind, capabilities)
            return TaskWorker(bus, platform.store, card, capabilities), model_port(platform, card)

        if options.runs("code-assistant"):
            worker, model = await enlist_worker(
                "code-assistant", AgentKind.CODE_ASSISTANT, CODE_CAPABILITIES
            )
            coder = CodeAssistant(
                worker, model, max_tokens=settings.model_max_tokens, delivery=delivery
            )
            broker.include_router(coder.router())
        if options.runs("document-assistant"):
            worker, model = await enlist_worker(
                "document-assistant", AgentKind.DOCUMENT_ASSISTANT, DOCUMENT_CAPABILITIES
            )
            index = DocumentIndex(platform.vectors, model)
            await index.ensure_collection()
            reader = DocumentAssistant(
                worker,
                model,
                index,
                BlobStore(platform.store),
                platform.nats,
                max_tokens=settings.model_max_tokens,
                delivery=delivery,
            )
            broker.include_router(reader.router())
        if options.runs("orchestrator"):
            worker, model = await enlist_worker(
                "orchestrator", AgentKind.ORCHESTRATOR, ORCHESTRATOR_CAPABILITIES
            )
            planner = Orchestrator(worker, model, delivery=delivery)
            broker.include_router(planner.router())
        coordinator: TaskCoordinator | None = None
        if options.runs("task-coordinator"):
            coordinator = TaskCoordinator(
                bus,
                platform.postgres,
                await agents_bucket(platform.store),
                CoordinatorPolicy(sweep_every=settings.coordinator_sweep_seconds),
            )
            broker.include_router(coordinator.router(platform.store))
        if options.runs("system-monitor"):
            await enlist(f"system-monitor-{replica}", AgentKind.SYSTEM_MONITOR, [])
        if settings.webhook_urls:
            broker.include_router(webhooks(settings).router(platform.store))
        await start_broker(broker)
        # Heartbeats only once every consumer exists on the server: an agent that looks online
        # is given work, and a new consumer sees only events that come after it.
        for card in cards:
            await running.enter_async_context(
                heartbeats(platform.store, bus, card, every=settings.heartbeat_seconds)
            )
        if coordinator is not None:
            await running.enter_async_context(coordinator.sweeping())
        if options.runs("system-monitor"):
            monitor = SystemMonitor(
                bus,
                platform.store,
                platform.postgres,
                await agents_bucket(platform.store),
                probes_of(platform.stack),
                platform.metrics,
                disks=data_places(settings),
            )
            await running.enter_async_context(monitor.watching())
        # On exit, consuming stops first (the message in hand finishes or is handed back), and
        # only then do the agents go offline: work in flight is not reassigned under their feet.
        running.push_async_callback(stop_consuming)
        readiness.ready(AGENTS)
        yield cards
