"""The base shapes every aggregate's commands, events and states share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

Payload = dict[str, JsonValue]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=100_000)]


class Frozen(BaseModel):
    """Immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorReport(Frozen):
    """Why something failed, as a worker reports it: a stable code and a message."""

    code: str = Field(min_length=1, max_length=100)
    message: str = Field(max_length=10_000)


class DomainEvent(Frozen):
    """Base of every domain event; `schema_version` grows when its shape changes."""

    schema_version: ClassVar[int] = 1


State = TypeVar("State")


def created(state: State | None, event: DomainEvent, creation: str) -> State:
    """The state an event applies to, or ValueError for an event before its aggregate's
    `creation` event."""
    if state is None:
        raise ValueError(f"{type(event).__name__} before {creation}")
    return state


Founded = TypeVar("Founded", bound=BaseModel)
Evolve = Callable[[Founded | None, DomainEvent], Founded]


def founded_by(
    creation: type[DomainEvent], state_type: type[Founded]
) -> Callable[[Callable[[Founded, DomainEvent], Founded]], Evolve[Founded]]:
    """Makes `evolve` of an aggregate whose creating event holds its whole first state.

    The creating event's fields are the state; the decorated function applies every later event
    to the state there is (an event before the creation is a ValueError, from `created`).
    """

    def evolve_from(later: Callable[[Founded, DomainEvent], Founded]) -> Evolve[Founded]:
        @functools.wraps(later)
        def evolve(state: Founded | None, event: DomainEvent) -> Founded:
            if isinstance(event, creation):
                return state_type(**event.model_dump())
            return later(created(state, event, creation.__name__), event)

        return evolve

    return evolve_from
