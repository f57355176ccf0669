"""The ModelCall aggregate: one call of a model by an agent, recorded for audit and cost.

Its id derives from the event that caused the call and the call's purpose, so recording the
same call again (a redelivered event) changes nothing.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from domain.errors import require_new
from domain.model import DomainEvent, Frozen, Name, Payload


class CallOutcome(StrEnum):
    """How a model call ended."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CIRCUIT_OPEN = "circuit_open"


AGGREGATE = "model_call"


class RecordModelCall(Frozen):
    """Record a model call that happened."""

    call_id: UUID
    agent_id: UUID | None = None
    model: Name
    operation: str = Field(pattern=r"^(chat|embed)$")
    purpose: Name
    prompt_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the prompt.")
    options: Payload = Field(default_factory=dict)
    latency_ms: float = Field(ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    outcome: CallOutcome
    error_code: str | None = Field(default=None, max_length=100)


ModelCallCommand = RecordModelCall


class CallRecord(Frozen):
    """One model call as recorded: the event says it and the state keeps it, field for field."""

    call_id: UUID
    agent_id: UUID | None
    model: str
    operation: str
    purpose: str
    prompt_hash: str
    options: Payload
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    outcome: CallOutcome
    error_code: str | None


class ModelCalled(CallRecord, DomainEvent):
    """An agent called a model: which, why, how long, how many tokens, and how it ended."""


EVENT_TYPES: tuple[type[DomainEvent], ...] = (ModelCalled,)


class ModelCall(CallRecord):
    """A recorded call."""


def decide(call: ModelCall | None, command: ModelCallCommand) -> list[DomainEvent]:
    """A call is recorded once."""
    require_new(call, AGGREGATE, command.call_id)
    return [ModelCalled(**command.model_dump())]


def evolve(call: ModelCall | None, event: DomainEvent) -> ModelCall:
    """The recorded call."""
    if not isinstance(event, ModelCalled):
        raise TypeError(f"not a model call event: {event!r}")  # pragma: no cover
    if call is not None:
        raise ValueError("a model call is recorded once")
    return ModelCall(**event.model_dump())
