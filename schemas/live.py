"""Streamed model output on core NATS (not persisted): `sutazai.live.conversation.<id>`.

An agent publishes one `ReplyToken` per token while it produces an assistant reply; the reply
itself is then recorded as one `AssistantReplied` event, which is the truth. A subscriber that
misses tokens loses nothing but the live view.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

LIVE_CONVERSATION_PREFIX = "sutazai.live.conversation"


def live_conversation_subject(conversation_id: UUID) -> str:
    """`sutazai.live.conversation.<id>`."""
    return f"{LIVE_CONVERSATION_PREFIX}.{conversation_id}"


class ReplyToken(BaseModel):
    """One token of an assistant reply being produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: UUID
    message_id: UUID = Field(description="The assistant message this token belongs to.")
    in_reply_to: UUID = Field(description="The user message being answered.")
    index: int = Field(ge=0, description="Position of the token in the reply, from 0.")
    token: str
