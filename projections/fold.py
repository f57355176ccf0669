"""The read side's fold: an aggregate's stored events into its state (docs/architecture.md §5).

Each event is upcast to the version the domain knows today (`schemas.events.decode_event`) and
folded with the domain's own `evolve`, as the command bus's loading does, without the memory of
processed commands that only the write side needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from domain.aggregates import AggregateKind
from schemas.envelope import EventEnvelope, RecordedEvent
from schemas.events import decode_event


@dataclass
class FoldedAggregate:
    """An aggregate's state after the events folded so far (None before the first)."""

    kind: AggregateKind
    state: BaseModel | None = None
    version: int = 0
    """The aggregate version of the last event folded."""
    sequence: int = 0
    """The stream sequence of the last event folded."""

    def apply(self, recorded: RecordedEvent) -> None:
        """Fold one stored event in."""
        self.apply_envelope(recorded.envelope, recorded.sequence)

    def apply_envelope(self, envelope: EventEnvelope, sequence: int) -> None:
        """Fold in an envelope stored at `sequence`."""
        event = decode_event(envelope.event_type, envelope.schema_version, dict(envelope.data))
        self.state = self.kind.evolve(self.state, event)
        self.version = envelope.aggregate_version
        self.sequence = sequence


def fold(
    kind: AggregateKind, events: Iterable[RecordedEvent], state: BaseModel | None = None
) -> FoldedAggregate:
    """The aggregate after `events`, folded onto `state` (None: from its first event)."""
    folded = FoldedAggregate(kind=kind, state=state)
    for recorded in events:
        folded.apply(recorded)
    return folded
