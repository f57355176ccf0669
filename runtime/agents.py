"""The agents' part of the composition root: model port, presence, FastStream broker.

Every agent of a process shares one NatsBroker (one connection); each registers itself,
beats its heartbeat, and subscribes through its own router.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from uuid import UUID

import ollama
from faststream.nats import NatsBroker
from purgatory import AsyncCircuitBreakerFactory

from commands.bus import CommandBus, CommandContext
from domain.agent import AgentKind
from domain.model_call import RecordModelCall
from handlers.code_assistant import CAPABILITIES as CODE_CAPABILITIES
from handlers.code_assistant import CodeAssistant
from handlers.consumers import Delivery
from handlers.model_port import ModelPolicy, ModelPort
from handlers.presence import AgentCard, agents_bucket, heartbeats, register
from handlers.task_coordinator import CoordinatorPolicy, TaskCoordinator
from runtime.bootstrap import Platform
from schemas.envelope import Actor, EventEnvelope

AGENT_KINDS = ("task-coordinator", "code-assistant")
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


def model_port(
    platform: Platform, breakers: AsyncCircuitBreakerFactory, card: AgentCard | None
) -> ModelPort:
    """A model port for one agent, recording each call through the bus."""
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
        breakers=breakers,
    )


@contextlib.asynccontextmanager
async def run_agents(platform: Platform, options: AgentOptions) -> AsyncIterator[list[AgentCard]]:
    """Run the chosen agents until the block ends; yields the cards of those registered."""
    settings = platform.settings
    bus: CommandBus = platform.commands.bus
    replica = options.replica or socket.gethostname().split(".")[0]
    breakers = AsyncCircuitBreakerFactory(
        default_threshold=settings.model_breaker_threshold,
        default_ttl=settings.model_breaker_seconds,
    )
    broker = NatsBroker(platform.stack.nats_url, log_level=logging.DEBUG)
    cards: list[AgentCard] = []
    async with contextlib.AsyncExitStack() as running:
        delivery = Delivery(attempts=settings.agent_attempts, ack_wait=settings.agent_ack_wait)
        if options.runs("code-assistant"):
            card = await register(
                bus,
                name=f"code-assistant-{replica}",
                kind=AgentKind.CODE_ASSISTANT,
                capabilities=CODE_CAPABILITIES,
                model=settings.chat_model,
            )
            assistant = CodeAssistant(
                bus,
                platform.store,
                model_port(platform, breakers, card),
                card,
                max_tokens=settings.model_max_tokens,
                delivery=delivery,
            )
            broker.include_router(assistant.router())
            await running.enter_async_context(
                heartbeats(platform.store, bus, card, every=settings.heartbeat_seconds)
            )
            cards.append(card)
        coordinator: TaskCoordinator | None = None
        if options.runs("task-coordinator"):
            coordinator = TaskCoordinator(
                bus,
                platform.postgres,
                await agents_bucket(platform.store),
                CoordinatorPolicy(sweep_every=settings.coordinator_sweep_seconds),
            )
            broker.include_router(coordinator.router(platform.store))
        await broker.start()
        running.push_async_callback(broker.stop)
        if coordinator is not None:
            await running.enter_async_context(coordinator.sweeping())
        yield cards
