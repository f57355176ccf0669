"""Fold one aggregate kind's events from the whole log in memory, for rebuilds from sequence 1.

The log is read a batch at a time (`eventstore.direct.replay_batches`), each envelope is decoded
into the few fields a fold needs (the rest is skipped by the parser, not built), and every
aggregate's state is kept with the bookkeeping its row carries. How a state is folded and
turned into columns is a `RowFold`: `DomainFold` goes through the domain's models and
`evolve`; a table may also offer a faster one that folds plain JSON (see `task_rows`), which
`disagreement` checks against the domain on a sample of aggregates.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
from pydantic import BaseModel

from domain.aggregates import AggregateKind
from eventstore.direct import replay_batches
from eventstore.store import EventStore
from schemas.events import decode_event

BuildProgress = Callable[[int, int], None]
"""Called with (sequence reached, sequence aimed at) as a build goes."""

SAMPLE_EVERY = 500
"""Of the aggregates a fast fold builds, every this many-th (the first included) is checked."""


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """The parts of a stored envelope (docs/architecture.md §3) that a fold reads.

    Envelopes were validated in full when appended; here only these fields are decoded, and
    checked for their types, and the others (ids, actor, causation) are skipped.
    """

    event_type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: str
    data: dict[str, Any]


decode_envelope = msgspec.json.Decoder(Envelope).decode


class RowFold(Protocol):
    """How the states of one aggregate kind are folded and turned into a row."""

    json_columns: tuple[str, ...]
    """Columns holding JSON text: equal when their JSON is, whatever its spelling."""

    def evolve(self, state: Any, event: Envelope) -> Any:
        """The state after one event (`state` is None before the first)."""
        ...

    def columns(self, state: Any) -> Mapping[str, Any]:
        """The row's own columns by name, from a folded state."""
        ...

    def state_json(self, state: Any) -> str:
        """The state as the row's `state` column holds it."""
        ...


class DomainFold:
    """Folds through the domain: each event's data validated (and upcast) by its model."""

    json_columns: tuple[str, ...] = ()

    def __init__(self, kind: AggregateKind, columns: Callable[[Any], dict[str, Any]]) -> None:
        self._evolve = kind.evolve
        self._columns = columns

    def evolve(self, state: BaseModel | None, event: Envelope) -> BaseModel:
        """The domain's `evolve` of the decoded event."""
        decoded = decode_event(event.event_type, event.schema_version, event.data)
        return self._evolve(state, decoded)

    def columns(self, state: BaseModel) -> Mapping[str, Any]:
        """The table's own column function."""
        return self._columns(state)

    def state_json(self, state: BaseModel) -> str:
        """The model's JSON."""
        return state.model_dump_json()


@dataclass
class Folded:
    """Every aggregate of one kind in the log, folded."""

    rows: dict[str, list[Any]] = field(default_factory=dict)
    """aggregate id -> [state, first occurred_at, last occurred_at, version, sequence, count]."""
    samples: dict[str, list[Envelope]] = field(default_factory=dict)
    """The events of the sampled aggregates, kept to fold them again another way."""

    @property
    def events(self) -> int:
        """How many events were folded."""
        return sum(row[5] for row in self.rows.values())


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector paused, for a bulk fold.

    Holding every folded state alive while allocating millions of short-lived objects makes
    the collector walk the states again and again (a fifth of a fold's time). The fold makes
    no reference cycles, so reference counting frees all it drops; the collector resumes after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def batches_of_kind(
    store: EventStore, kind: str, up_to: int
) -> AsyncIterator[tuple[int, list[tuple[int, Envelope, bytes]]]]:
    """The log's events of aggregate type `kind` from sequence 1 to `up_to`, each with its
    sequence, decoded and as stored; a list a replay batch (a generator step per event would
    cost a rebuild ~1 s), with the batch's last sequence (for progress)."""
    # Any JSON holding this aggregate type holds its name as a string: a cheap first sieve.
    sieve = f'"{kind}"'.encode()
    async for first, bodies in replay_batches(
        store.client,
        from_sequence=1,
        up_to_sequence=up_to,
        timeout=store.timeout,
        watch=store.watch,
    ):
        batch = []
        for sequence, body in enumerate(bodies, first):
            if sieve in body:
                event = decode_envelope(body)
                if event.aggregate_type == kind:
                    batch.append((sequence, event, body))
        yield first + len(bodies) - 1, batch


async def fold_log(
    store: EventStore,
    kind: str,
    fold: RowFold,
    *,
    up_to: int,
    progress: BuildProgress | None = None,
    sample: bool = False,
) -> Folded:
    """Fold every event of aggregate type `kind` from sequence 1 to `up_to` with `fold`."""
    folded = Folded()
    rows, samples = folded.rows, folded.samples
    evolve = fold.evolve
    async for last, batch in batches_of_kind(store, kind, up_to):
        for sequence, event, _ in batch:
            aggregate_id = event.aggregate_id
            row = rows.get(aggregate_id)
            if row is None:
                if sample and len(rows) % SAMPLE_EVERY == 0:
                    samples[aggregate_id] = []
                row = rows[aggregate_id] = [None, event.occurred_at, None, 0, 0, 0]
            row[0] = evolve(row[0], event)
            row[2] = event.occurred_at
            row[3] = event.aggregate_version
            row[4] = sequence
            row[5] += 1
            if samples and aggregate_id in samples:
                samples[aggregate_id].append(event)
        if progress is not None:
            progress(last, up_to)
    return folded


def record(
    aggregate_id: str, row: list[Any], fold: RowFold, column_names: Sequence[str]
) -> tuple[Any, ...]:
    """One row to COPY: id, own columns, then the bookkeeping columns, in table order."""
    state, created, updated, version, sequence, count = row
    own = fold.columns(state)
    return (
        aggregate_id,  # asyncpg takes a UUID's text as well
        *map(own.__getitem__, column_names),
        datetime.fromisoformat(created),
        datetime.fromisoformat(updated),
        version,
        sequence,
        count,
        fold.state_json(state),
    )


def records(folded: Folded, fold: RowFold, column_names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The rows to COPY (see `record`)."""
    return [record(key, row, fold, column_names) for key, row in folded.rows.items()]


def _comparable(value: object, is_json: bool) -> object:
    """A column's value in a form two folds' values can be compared in."""
    if is_json and isinstance(value, str):
        return msgspec.json.decode(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_comparable(item, False) for item in value]
    return value


def disagreement(
    folded: Folded, fold: RowFold, domain: DomainFold, column_names: Sequence[str]
) -> str | None:
    """Where `fold` built a sampled row other than the domain would, or None if nowhere."""
    for aggregate_id, events in folded.samples.items():
        state: BaseModel | None = None
        for event in events:
            state = domain.evolve(state, event)
        assert state is not None  # a sampled aggregate has its first event
        ours, theirs = fold.columns(folded.rows[aggregate_id][0]), domain.columns(state)
        for name in column_names:
            is_json = name in fold.json_columns
            if _comparable(ours[name], is_json) != _comparable(theirs[name], is_json):
                return f"{aggregate_id}: column {name}: {ours[name]!r} != {theirs[name]!r}"
        if msgspec.json.decode(fold.state_json(folded.rows[aggregate_id][0])) != (
            state.model_dump(mode="json")
        ):
            return f"{aggregate_id}: state differs"
    return None
