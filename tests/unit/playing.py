"""A script of commands played through an aggregate's `decide` and `evolve` (property tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from domain.errors import DomainError

State = TypeVar("State")
Event = TypeVar("Event")


def play(
    decide: Callable[[State | None, Any], Sequence[Event]],
    evolve: Callable[[State | None, Event], State],
    state: State | None,
    script: Iterable[Any],
) -> Iterator[tuple[State, Sequence[Event]]]:
    """Each command of `script` the domain accepts, in order: the state after it and the events
    it caused. A command the domain refuses (a `DomainError`) is passed over."""
    for command in script:
        try:
            events = decide(state, command)
        except DomainError:
            continue
        for event in events:
            state = evolve(state, event)
        assert state is not None, "an accepted command leaves a state"
        yield state, events
