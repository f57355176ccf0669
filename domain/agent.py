"""The Agent aggregate: a worker that takes tasks matching its capabilities."""

from __future__ import annotations

from enum import StrEnum
from typing import get_args
from uuid import UUID

from pydantic import Field

from domain.errors import AggregateAlreadyExists, AggregateNotFound, IllegalTransition
from domain.model import DomainEvent, Frozen

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


STATE = Agent
"""The folded state's type."""
ID_FIELD = "agent_id"
"""The field of every command that names the agent it addresses."""
COMMAND_TYPES: tuple[type[Frozen], ...] = get_args(AgentCommand)
"""Every command, the creating one first."""


def decide(agent: Agent | None, command: AgentCommand) -> list[DomainEvent]:
    """The events a command causes on the agent, or a typed domain error."""
    if isinstance(command, RegisterAgent):
        if agent is not None:
            raise AggregateAlreadyExists(AGGREGATE, command.agent_id)
        return [
            AgentRegistered(
                agent_id=command.agent_id,
                name=command.name,
                kind=command.kind,
                capabilities=command.capabilities,
                model=command.model,
            )
        ]
    if agent is None:
        raise AggregateNotFound(AGGREGATE, command.agent_id)
    status, event, action = _TARGET[type(command)]
    if agent.status is AgentStatus.RETIRED:
        raise IllegalTransition(AGGREGATE, agent.agent_id, agent.status.value, action)
    if agent.status is AgentStatus.REGISTERED and status is AgentStatus.BUSY:
        raise IllegalTransition(AGGREGATE, agent.agent_id, agent.status.value, action)
    # Heartbeats repeat: saying what is already so changes nothing.
    return [] if agent.status is status else [event()]


_STATUS_AFTER: dict[type[DomainEvent], AgentStatus] = {
    AgentWentOnline: AgentStatus.ONLINE,
    AgentBecameBusy: AgentStatus.BUSY,
    AgentWentOffline: AgentStatus.OFFLINE,
    AgentRetired: AgentStatus.RETIRED,
}


def evolve(agent: Agent | None, event: DomainEvent) -> Agent:
    """The agent after one of its events."""
    if isinstance(event, AgentRegistered):
        return Agent(**event.model_dump())
    if agent is None:
        raise ValueError(f"{type(event).__name__} before AgentRegistered")
    return agent.model_copy(update={"status": _STATUS_AFTER[type(event)]})
