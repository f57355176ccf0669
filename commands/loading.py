"""Load an aggregate: its snapshot, the events after it, folded, with the commands it remembers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from uuid import UUID

from pydantic import BaseModel

from domain.aggregates import AggregateKind
from eventstore.snapshots import RememberedOutcome, Snapshot
from eventstore.store import EventStore
from schemas.envelope import EventEnvelope, RecordedEvent
from schemas.events import decode_event, event_data


@dataclass
class LoadedAggregate:
    """An aggregate's state at `version`, whose last event has stream sequence `sequence`."""

    kind: AggregateKind
    aggregate_id: UUID
    state: BaseModel | None = None
    version: int = 0
    sequence: int = 0
    commands: dict[str, RememberedOutcome] = field(default_factory=dict)
    events_since_snapshot: int = 0

    def apply(self, recorded: RecordedEvent) -> None:
        """Fold one stored event in, and remember the command that caused it."""
        self.apply_envelope(recorded.envelope, recorded.sequence)

    def apply_envelope(self, envelope: EventEnvelope, sequence: int) -> None:
        """Fold in an envelope stored at `sequence`."""
        event = decode_event(envelope.event_type, envelope.schema_version, dict(envelope.data))
        self._fold(event, envelope, sequence)

    def advance(
        self, events: Sequence[BaseModel], envelopes: Sequence[EventEnvelope], first_sequence: int
    ) -> None:
        """Fold in events this process just appended (no decoding: they are at hand)."""
        for offset, (event, envelope) in enumerate(zip(events, envelopes, strict=True)):
            self._fold(event, envelope, first_sequence + offset)

    def _fold(self, event: BaseModel, envelope: EventEnvelope, sequence: int) -> None:
        self.state = self.kind.evolve(self.state, event)
        self.version = envelope.aggregate_version
        self.sequence = sequence
        self.events_since_snapshot += 1
        earlier = self.commands.get(envelope.command_id)
        types = (*earlier.event_types, envelope.event_type) if earlier else (envelope.event_type,)
        # Built from values of our own (ints, the event types we stored): no validation to run.
        self.commands[envelope.command_id] = RememberedOutcome.model_construct(
            version=self.version, sequence=self.sequence, event_types=types
        )

    def copy(self) -> LoadedAggregate:
        """An independent copy (states are immutable; the command memory is not)."""
        return replace(self, commands=dict(self.commands))

    def forget_old_commands(self, keep: int) -> None:
        """Keep only the `keep` most recent command outcomes."""
        if len(self.commands) > keep:
            recent = sorted(self.commands.items(), key=lambda item: item[1].sequence)[-keep:]
            self.commands = dict(recent)

    def snapshot(self, remember: int) -> Snapshot:
        """The snapshot of this state, keeping the `remember` most recent command outcomes."""
        assert self.state is not None
        self.forget_old_commands(remember)
        return Snapshot(
            aggregate_type=self.kind.name,
            aggregate_id=self.aggregate_id,
            state_schema=self.kind.state_schema,
            version=self.version,
            sequence=self.sequence,
            state=event_data(self.state),
            commands=dict(self.commands),
        )


async def load_aggregate(
    store: EventStore, kind: AggregateKind, aggregate_id: UUID, *, use_snapshot: bool = True
) -> LoadedAggregate:
    """The aggregate as of now: its snapshot (if it fits the state's shape) and newer events.

    The snapshot and the aggregate's events (read through the server's subject index, which
    costs the same on any length of log: `eventstore/aggregate_read.py`) are asked for at once,
    so most loads cost one round trip. Events the snapshot holds are skipped. When those reads
    do not add up, the events after the snapshot are read by wildcard.
    """
    loaded = LoadedAggregate(kind=kind, aggregate_id=aggregate_id)
    history = store.aggregate_history(kind.name, aggregate_id)
    if use_snapshot:
        snapshot, events = await asyncio.gather(
            store.snapshots.get(kind.name, aggregate_id), history
        )
    else:
        snapshot, events = None, await history
    if snapshot is not None and snapshot.state_schema == kind.state_schema:
        loaded.state = kind.state_type.model_validate(snapshot.state)
        loaded.version = snapshot.version
        loaded.sequence = snapshot.sequence
        loaded.commands = dict(snapshot.commands)
    if events is None:
        events = [
            e
            async for e in store.aggregate_events(
                kind.name, aggregate_id, after_sequence=loaded.sequence
            )
        ]
    for recorded in events:
        if recorded.sequence > loaded.sequence:
            loaded.apply(recorded)
    return loaded


def fold(
    kind: AggregateKind, events: Sequence[RecordedEvent], aggregate_id: UUID
) -> LoadedAggregate:
    """Fold a list of stored events (for audit and tests) without touching the store."""
    loaded = LoadedAggregate(kind=kind, aggregate_id=aggregate_id)
    for recorded in events:
        loaded.apply(recorded)
    return loaded
