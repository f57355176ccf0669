"""The GraphQL shapes of the log itself: events with their envelope, an aggregate's history, its
state at a point."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON


@strawberry.type(description="Who caused a change.")
class ActorRef:
    id: str
    kind: str


@strawberry.type(description="One event of the log, with its envelope.")
class Event:
    sequence: int
    event_id: strawberry.ID
    event_type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: strawberry.ID
    aggregate_version: int
    occurred_at: datetime
    actor: ActorRef
    command_id: str
    correlation_id: str
    causation_id: str | None
    reason: str | None
    data: JSON


@strawberry.type(description="One page of events and the sequence to continue after.")
class EventPage:
    items: list[Event]
    next_after_sequence: int | None


@strawberry.type(
    name="Change", description="One change in an aggregate's history: who, when, why, how."
)
class ChangeObject:
    version: int
    sequence: int
    event_type: str
    occurred_at: datetime
    actor: ActorRef
    reason: str | None
    command_id: str
    correlation_id: str
    causation_id: str | None
    data: JSON


@strawberry.type(name="StateAt", description="An aggregate as it was at a version or a time.")
class StateAtObject:
    aggregate_type: str
    aggregate_id: strawberry.ID
    version: int
    occurred_at: datetime | None
    state: JSON | None
