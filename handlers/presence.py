"""Who is online: each agent replica registers itself and keeps a heartbeat in KV `sutazai_agents`.

A heartbeat is a key per agent id with the agent's card (name, kind, capabilities); the bucket's
TTL removes the key of an agent that stopped beating, which is how the coordinator learns an
agent is gone (what Consul did).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from uuid import UUID

import nats.errors
import structlog
from nats.js.kv import KeyValue
from uuid_utils.compat import uuid7

from commands.bus import CommandBus, CommandContext
from commands.dispatch import aggregate_id_for
from domain.agent import AgentKind, BringAgentOnline, RegisterAgent, TakeAgentOffline
from eventstore.store import EventStore
from eventstore.streams import AGENTS_BUCKET
from handlers.background import STOP_DEADLINE, repeating
from schemas.envelope import Actor

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AgentCard:
    """What the coordinator needs to know of an online agent."""

    agent_id: str
    name: str
    kind: str
    capabilities: list[str]
    model: str

    @property
    def actor(self) -> Actor:
        """The actor its commands record."""
        return Actor(id=self.agent_id, kind="agent")

    def can_do(self, task_type: str) -> bool:
        """A capability names a task type exactly, or a family of them (`code.*`)."""
        for capability in self.capabilities:
            if capability == task_type or (
                capability.endswith(".*") and task_type.startswith(capability[:-1])
            ):
                return True
        return False


async def register(
    bus: CommandBus,
    *,
    name: str,
    kind: AgentKind,
    capabilities: list[str],
    model: str,
) -> AgentCard:
    """Register the agent (once: its id derives from its name) and bring it online."""
    command_id = f"register-agent.{name}"
    agent_id = aggregate_id_for(command_id)
    actor = Actor(id=str(agent_id), kind="agent")
    register_it = RegisterAgent(
        agent_id=agent_id, name=name, kind=kind, capabilities=tuple(capabilities), model=model
    )
    await bus.execute(register_it, CommandContext(command_id=command_id, actor=actor))
    await bus.execute(
        BringAgentOnline(agent_id=agent_id),
        CommandContext(command_id=str(uuid7()), actor=actor),
    )
    return AgentCard(str(agent_id), name, kind.value, list(capabilities), model)


async def agents_bucket(store: EventStore) -> KeyValue:
    """The heartbeat bucket."""
    return await store.bucket(AGENTS_BUCKET)


LISTING_LINGER = 5.0
"""Seconds the server keeps a listing's consumer after we stop reading it. nats-py's default
(five minutes, also what `KeyValue.keys()` uses) let the sweeps of a few coordinators and
monitors, each listing every half second, fill the stream's consumer limit: listing failed and
no task was assigned any more."""


async def online_agents(bucket: KeyValue) -> list[AgentCard]:
    """Every agent whose heartbeat has not expired."""
    watcher = await bucket.watchall(ignore_deletes=True, inactive_threshold=LISTING_LINGER)
    cards = []
    try:
        # Bounded: the end-of-listing marker can go missing when a heartbeat expires mid-read.
        async with asyncio.timeout(LISTING_LINGER):
            async for entry in watcher:
                if entry is None:  # every current value has been delivered
                    break
                if entry.value:
                    cards.append(AgentCard(**json.loads(entry.value)))
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return cards


@contextlib.asynccontextmanager
async def heartbeats(
    store: EventStore, bus: CommandBus, card: AgentCard, *, every: float
) -> AsyncIterator[None]:
    """Beat every `every` seconds until the block ends, then take the agent offline."""
    bucket = await agents_bucket(store)
    body = json.dumps(asdict(card)).encode()

    async def beat() -> None:
        try:
            await bucket.put(card.agent_id, body)
        except (nats.errors.Error, OSError) as error:
            log.warning("agent.heartbeat_failed", agent=card.name, error=repr(error))

    try:
        async with repeating(f"heartbeat.{card.name}", beat, every=every):
            yield
    finally:
        # Offline at once rather than when the key expires; bounded, the servers may be gone.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STOP_DEADLINE):
                await bucket.delete(card.agent_id)
                await bus.execute(
                    TakeAgentOffline(agent_id=UUID(card.agent_id)),
                    CommandContext(command_id=str(uuid7()), actor=card.actor),
                )
