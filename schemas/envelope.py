"""The event envelope (docs/architecture.md §3): one JSON body, the same headers on every event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_validator

EVENT_SUBJECT_PREFIX = "sutazai.events"
COMMAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"

ActorKind = Literal["user", "agent", "system"]


class Actor(BaseModel):
    """Who caused a change: a user, an agent or the system itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    kind: ActorKind


SYSTEM = Actor(id="system", kind="system")


class EventEnvelope(BaseModel):
    """One event as stored on `SUTAZAI_EVENTS` and read by every consumer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    event_type: str
    schema_version: int = Field(ge=1)
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    actor: Actor
    command_id: str = Field(pattern=COMMAND_ID_PATTERN)
    correlation_id: str
    causation_id: str | None = None
    reason: str | None = Field(default=None, max_length=2_000)
    data: dict[str, JsonValue]

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def subject(self) -> str:
        """`sutazai.events.<aggregate>.<id>.<EventType>`."""
        return event_subject(self.aggregate_type, self.aggregate_id, self.event_type)

    def headers(self, index: int) -> dict[str, str]:
        """The headers every event carries; `index` is its place in its command's batch."""
        return {
            "Nats-Msg-Id": f"{self.command_id}:{index}",
            "Sutazai-Event-Type": self.event_type,
            "Sutazai-Aggregate-Version": str(self.aggregate_version),
            "Sutazai-Correlation-Id": self.correlation_id,
        }


class RecordedEvent(BaseModel):
    """An envelope as the log holds it: with the stream sequence the server gave it."""

    model_config = ConfigDict(frozen=True)

    sequence: int = Field(ge=1)
    envelope: EventEnvelope
    traceparent: str | None = None
    """The W3C trace context the event was appended under (a header, not part of the body)."""


def event_subject(aggregate_type: str, aggregate_id: UUID | str, event_type: str) -> str:
    """The subject one event is stored under."""
    return f"{EVENT_SUBJECT_PREFIX}.{aggregate_type}.{aggregate_id}.{event_type}"


def aggregate_subjects(aggregate_type: str, aggregate_id: UUID | str) -> str:
    """The filter matching every event of one aggregate."""
    return f"{EVENT_SUBJECT_PREFIX}.{aggregate_type}.{aggregate_id}.*"
