"""Audit from the log: an aggregate's every change, and its state at a version or a time.

Read straight from the event stream (never from a read model), so the answer is the truth even
while projections lag or are being rebuilt. The gateway's audit queries call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, JsonValue

from domain.aggregates import AGGREGATES, AggregateKind
from eventstore.store import EventStore
from projections.fold import FoldedAggregate
from schemas.envelope import Actor


class UnknownAggregateType(LookupError):
    """No aggregate of that name exists."""


@dataclass(frozen=True)
class Change:
    """One event of an aggregate's history: what changed, who, when, why, through which command."""

    version: int
    sequence: int
    event_type: str
    occurred_at: datetime
    actor: Actor
    reason: str | None
    command_id: str
    correlation_id: str
    causation_id: str | None
    data: dict[str, JsonValue]


@dataclass(frozen=True)
class StateAt:
    """An aggregate folded up to a point: its state then, and the version and time of that state."""

    state: BaseModel | None
    version: int
    occurred_at: datetime | None


def _kind(aggregate_type: str) -> AggregateKind:
    try:
        return AGGREGATES[aggregate_type]
    except KeyError:
        known = ", ".join(sorted(AGGREGATES))
        raise UnknownAggregateType(f"no aggregate {aggregate_type!r}; known: {known}") from None


async def history(store: EventStore, aggregate_type: str, aggregate_id: UUID) -> list[Change]:
    """Every change of the aggregate, oldest first."""
    _kind(aggregate_type)
    return [
        Change(
            version=e.envelope.aggregate_version,
            sequence=e.sequence,
            event_type=e.envelope.event_type,
            occurred_at=e.envelope.occurred_at,
            actor=e.envelope.actor,
            reason=e.envelope.reason,
            command_id=e.envelope.command_id,
            correlation_id=e.envelope.correlation_id,
            causation_id=e.envelope.causation_id,
            data=dict(e.envelope.data),
        )
        async for e in store.aggregate_events(aggregate_type, aggregate_id)
    ]


async def state_at(
    store: EventStore,
    aggregate_type: str,
    aggregate_id: UUID,
    *,
    version: int | None = None,
    at: datetime | None = None,
) -> StateAt:
    """The aggregate as it was at `version`, or at time `at`, or now (neither given).

    Folds from the first event (snapshots are not consulted: they only hold the latest state).
    """
    folded = FoldedAggregate(kind=_kind(aggregate_type))
    occurred_at: datetime | None = None
    async for recorded in store.aggregate_events(aggregate_type, aggregate_id):
        envelope = recorded.envelope
        if version is not None and envelope.aggregate_version > version:
            break
        if at is not None and envelope.occurred_at > at:
            break
        folded.apply(recorded)
        occurred_at = envelope.occurred_at
    return StateAt(state=folded.state, version=folded.version, occurred_at=occurred_at)


class LogAudit:
    """The audit functions bound to one event store (what the gateway is handed)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def history(self, aggregate_type: str, aggregate_id: UUID) -> list[Change]:
        """Every change of the aggregate, oldest first."""
        return await history(self._store, aggregate_type, aggregate_id)

    async def state_at(
        self,
        aggregate_type: str,
        aggregate_id: UUID,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> StateAt:
        """The aggregate at a version or a time (see `state_at`)."""
        return await state_at(self._store, aggregate_type, aggregate_id, version=version, at=at)
