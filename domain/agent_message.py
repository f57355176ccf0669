"""The AgentMessage aggregate: one message from one agent to another, about a task."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from domain.errors import require_existing, require_new
from domain.model import DomainEvent, Frozen, Payload, founded_by

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


def decide(message: AgentMessage | None, command: AgentMessageCommand) -> list[DomainEvent]:
    """The events a command causes on the message, or a typed domain error."""
    if isinstance(command, SendAgentMessage):
        require_new(message, AGGREGATE, command.message_id)
        return [AgentMessageSent(**command.model_dump())]
    message = require_existing(message, AGGREGATE, command.message_id)
    return [] if message.acknowledged else [AgentMessageAcknowledged()]


@founded_by(AgentMessageSent, AgentMessage)
def evolve(message: AgentMessage, event: DomainEvent) -> AgentMessage:
    """The message after one of its events."""
    return message.model_copy(update={"acknowledged": True})
