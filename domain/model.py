"""The base shapes every aggregate's commands, events and states share."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

Payload = dict[str, JsonValue]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=100_000)]


class Frozen(BaseModel):
    """Immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DomainEvent(Frozen):
    """Base of every domain event; `schema_version` grows when its shape changes."""

    schema_version: ClassVar[int] = 1
