"""The AgentMessage aggregate: one message from one agent to another, about a task."""

from __future__ import annotations

from enum import StrEnum
from typing import get_args
from uuid import UUID

from pydantic import Field

from domain.errors import AggregateAlreadyExists, AggregateNotFound
from domain.model import DomainEvent, Frozen, Payload

AGGREGATE = "agent_message"


class MessageType(StrEnum):
    """What a message carries."""

    TASK = "task"
    RESULT = "result"
    ERROR = "error"
    HEARTBEAT = "heartbeat"
    NOTE = "note"


class SendAgentMessage(Frozen):
    """Send a message."""

    message_id: UUID
    source_agent_id: UUID
    target_agent_id: UUID
    task_id: UUID | None = None
    message_type: MessageType
    payload: Payload = Field(default_factory=dict)


class AcknowledgeAgentMessage(Frozen):
    """The target has read the message."""

    message_id: UUID


AgentMessageCommand = SendAgentMessage | AcknowledgeAgentMessage


class AgentMessageSent(DomainEvent):
    """A message was sent."""

    message_id: UUID
    source_agent_id: UUID
    target_agent_id: UUID
    task_id: UUID | None
    message_type: MessageType
    payload: Payload


class AgentMessageAcknowledged(DomainEvent):
    """The target read the message."""


EVENT_TYPES: tuple[type[DomainEvent], ...] = (AgentMessageSent, AgentMessageAcknowledged)


class AgentMessage(Frozen):
    """A message's state."""

    message_id: UUID
    source_agent_id: UUID
    target_agent_id: UUID
    task_id: UUID | None
    message_type: MessageType
    payload: Payload
    acknowledged: bool = False


STATE = AgentMessage
"""The folded state's type."""
ID_FIELD = "message_id"
"""The field of every command that names the agent message it addresses."""
COMMAND_TYPES: tuple[type[Frozen], ...] = get_args(AgentMessageCommand)
"""Every command, the creating one first."""


def decide(message: AgentMessage | None, command: AgentMessageCommand) -> list[DomainEvent]:
    """The events a command causes on the message, or a typed domain error."""
    if isinstance(command, SendAgentMessage):
        if message is not None:
            raise AggregateAlreadyExists(AGGREGATE, command.message_id)
        return [AgentMessageSent(**command.model_dump())]
    if message is None:
        raise AggregateNotFound(AGGREGATE, command.message_id)
    return [] if message.acknowledged else [AgentMessageAcknowledged()]


def evolve(message: AgentMessage | None, event: DomainEvent) -> AgentMessage:
    """The message after one of its events."""
    if isinstance(event, AgentMessageSent):
        return AgentMessage(**event.model_dump())
    if message is None:
        raise ValueError(f"{type(event).__name__} before AgentMessageSent")
    return message.model_copy(update={"acknowledged": True})
