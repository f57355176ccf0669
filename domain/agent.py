"""The Agent aggregate: a worker that takes tasks matching its capabilities."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from domain.errors import IllegalTransition, require_existing, require_new
from domain.model import DomainEvent, Frozen, founded_by

AGGREGATE = "agent"


class AgentKind(StrEnum):
    """What an agent is for."""

    TASK_COORDINATOR = "task_coordinator"
    CODE_ASSISTANT = "code_assistant"
    DOCUMENT_ASSISTANT = "document_assistant"
    ORCHESTRATOR = "orchestrator"
    SYSTEM_MONITOR = "system_monitor"
    CUSTOM = "custom"


class AgentStatus(StrEnum):
    """Where an agent is in its life."""

    REGISTERED = "registered"
    ONLINE = "online"
    BUSY = "busy"
    OFFLINE = "offline"
    RETIRED = "retired"


Capability = str


class RegisterAgent(Frozen):
    """Add an agent (its name is unique across agents)."""

    agent_id: UUID
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: AgentKind
    capabilities: tuple[Capability, ...] = Field(default=(), max_length=100)
    model: str = Field(default="", max_length=200)


class BringAgentOnline(Frozen):
    """The agent is up and takes work."""

    agent_id: UUID


class MarkAgentBusy(Frozen):
    """The agent is working at capacity."""

    agent_id: UUID


class TakeAgentOffline(Frozen):
    """The agent stopped (or its heartbeat expired)."""

    agent_id: UUID


class RetireAgent(Frozen):
    """The agent will never work again."""

    agent_id: UUID


AgentCommand = RegisterAgent | BringAgentOnline | MarkAgentBusy | TakeAgentOffline | RetireAgent


class AgentRegistered(DomainEvent):
    """An agent was added."""

    agent_id: UUID
    name: str
    kind: AgentKind
    capabilities: tuple[Capability, ...]
    model: str


class AgentWentOnline(DomainEvent):
    """The agent takes work."""


class AgentBecameBusy(DomainEvent):
    """The agent works at capacity."""


class AgentWentOffline(DomainEvent):
    """The agent stopped."""


class AgentRetired(DomainEvent):
    """The agent will never work again."""


EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    AgentRegistered,
    AgentWentOnline,
    AgentBecameBusy,
    AgentWentOffline,
    AgentRetired,
)


class Agent(Frozen):
    """An agent's state."""

    agent_id: UUID
    name: str
    kind: AgentKind
    capabilities: tuple[Capability, ...]
    model: str
    status: AgentStatus = AgentStatus.REGISTERED


_TARGET = {
    BringAgentOnline: (AgentStatus.ONLINE, AgentWentOnline, "bring online"),
    MarkAgentBusy: (AgentStatus.BUSY, AgentBecameBusy, "mark busy"),
    TakeAgentOffline: (AgentStatus.OFFLINE, AgentWentOffline, "take offline"),
    RetireAgent: (AgentStatus.RETIRED, AgentRetired, "retire"),
}


def decide(agent: Agent | None, command: AgentCommand) -> list[DomainEvent]:
    """The events a command causes on the agent, or a typed domain error."""
    if isinstance(command, RegisterAgent):
        require_new(agent, AGGREGATE, command.agent_id)
        return [AgentRegistered(**command.model_dump())]
    agent = require_existing(agent, AGGREGATE, command.agent_id)
    status, event, action = _TARGET[type(command)]
    if agent.status is AgentStatus.RETIRED:
        raise IllegalTransition(AGGREGATE, agent.agent_id, agent.status.value, action)
    if agent.status is AgentStatus.REGISTERED and status is AgentStatus.BUSY:
        raise IllegalTransition(AGGREGATE, agent.agent_id, agent.status.value, action)
    # Heartbeats repeat: saying what is already so changes nothing.
    return [] if agent.status is status else [event()]


STATUS_AFTER: dict[type[DomainEvent], AgentStatus] = {
    AgentWentOnline: AgentStatus.ONLINE,
    AgentBecameBusy: AgentStatus.BUSY,
    AgentWentOffline: AgentStatus.OFFLINE,
    AgentRetired: AgentStatus.RETIRED,
}
"""The status each event after the registration leaves an agent in: `evolve` and every other
fold that shows an agent's status (the graph's) read it here."""


@founded_by(AgentRegistered, Agent)
def evolve(agent: Agent, event: DomainEvent) -> Agent:
    """The agent after one of its events."""
    return agent.model_copy(update={"status": STATUS_AFTER[type(event)]})
