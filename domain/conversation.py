"""The Conversation aggregate: a user talking with an assistant that may cite documents."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from domain.errors import (
    IllegalTransition,
    UnknownMessage,
    require_existing,
    require_new,
)
from domain.model import DomainEvent, Frozen, founded_by

AGGREGATE = "conversation"


class MessageRole(StrEnum):
    """Who said it."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class Citation(Frozen):
    """A chunk of a document that an answer relies on."""

    document_id: UUID
    chunk_index: int = Field(ge=0)


class StartConversation(Frozen):
    """Open a conversation."""

    conversation_id: UUID
    owner_id: UUID
    title: str = Field(default="", max_length=500)
    model: str = Field(default="", max_length=200)


class PostUserMessage(Frozen):
    """The user says something."""

    conversation_id: UUID
    message_id: UUID
    content: str = Field(min_length=1, max_length=100_000)


class RecordAssistantReply(Frozen):
    """The assistant's answer to a user message, with the model used and what it cites."""

    conversation_id: UUID
    message_id: UUID
    in_reply_to: UUID
    content: str = Field(max_length=100_000)
    model: str = Field(min_length=1, max_length=200)
    citations: tuple[Citation, ...] = Field(default=(), max_length=100)


class CloseConversation(Frozen):
    """End the conversation."""

    conversation_id: UUID


ConversationCommand = StartConversation | PostUserMessage | RecordAssistantReply | CloseConversation


class ConversationStarted(DomainEvent):
    """A conversation was opened."""

    conversation_id: UUID
    owner_id: UUID
    title: str
    model: str


class UserMessagePosted(DomainEvent):
    """The user said something."""

    message_id: UUID
    content: str


class AssistantReplied(DomainEvent):
    """The assistant answered."""

    message_id: UUID
    in_reply_to: UUID
    content: str
    model: str
    citations: tuple[Citation, ...]


class ConversationClosed(DomainEvent):
    """The conversation ended."""


EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    ConversationStarted,
    UserMessagePosted,
    AssistantReplied,
    ConversationClosed,
)


class Message(Frozen):
    """One message of a conversation."""

    message_id: UUID
    role: MessageRole
    content: str
    model: str | None = None
    in_reply_to: UUID | None = None
    citations: tuple[Citation, ...] = ()


class Conversation(Frozen):
    """A conversation's state."""

    conversation_id: UUID
    owner_id: UUID
    title: str
    model: str
    messages: tuple[Message, ...] = ()
    closed: bool = False


def decide(conversation: Conversation | None, command: ConversationCommand) -> list[DomainEvent]:
    """The events a command causes on the conversation, or a typed domain error."""
    if isinstance(command, StartConversation):
        require_new(conversation, AGGREGATE, command.conversation_id)
        return [ConversationStarted(**command.model_dump())]
    conversation = require_existing(conversation, AGGREGATE, command.conversation_id)
    if conversation.closed:
        raise IllegalTransition(AGGREGATE, conversation.conversation_id, "closed", "change")
    known = {message.message_id: message for message in conversation.messages}
    match command:
        case PostUserMessage(message_id=message_id, content=content):
            if message_id in known:
                return []
            return [UserMessagePosted(message_id=message_id, content=content)]
        case RecordAssistantReply():
            asked = known.get(command.in_reply_to)
            if asked is None or asked.role is not MessageRole.USER:
                raise UnknownMessage(conversation.conversation_id, command.in_reply_to)
            if command.message_id in known:
                return []
            return [AssistantReplied(**command.model_dump(exclude={"conversation_id"}))]
        case CloseConversation():
            return [ConversationClosed()]
    raise TypeError(f"not a conversation command: {command!r}")  # pragma: no cover


@founded_by(ConversationStarted, Conversation)
def evolve(conversation: Conversation, event: DomainEvent) -> Conversation:
    """The conversation after one of its events."""
    match event:
        case UserMessagePosted():
            role = MessageRole.USER
        case AssistantReplied():
            role = MessageRole.ASSISTANT
        case ConversationClosed():
            return conversation.model_copy(update={"closed": True})
        case _:
            raise TypeError(f"not a conversation event: {event!r}")  # pragma: no cover
    # A message event carries the message's fields; who said it is the event's type.
    message = Message(role=role, **event.model_dump())
    return conversation.model_copy(update={"messages": (*conversation.messages, message)})
