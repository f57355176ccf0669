"""Commands on the wire (`sutazai.cmd.<CommandName>`): the request and its typed reply."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from schemas.envelope import COMMAND_ID_PATTERN, Actor

COMMAND_SUBJECT_PREFIX = "sutazai.cmd"


def command_subject(command_name: str) -> str:
    """`sutazai.cmd.<CommandName>`."""
    return f"{COMMAND_SUBJECT_PREFIX}.{command_name}"


class CommandRequest(BaseModel):
    """A command as another program sends it.

    `command_id` makes a retry safe: the same id returns the first outcome and appends nothing.
    Leave it out and one is minted (then a retry is a new command).
    """

    model_config = ConfigDict(extra="forbid")

    command_id: str | None = Field(default=None, pattern=COMMAND_ID_PATTERN)
    actor: Actor
    reason: str | None = Field(default=None, max_length=2_000)
    correlation_id: str | None = Field(default=None, max_length=200)
    causation_id: str | None = Field(default=None, max_length=200)
    payload: dict[str, JsonValue] = Field(default_factory=dict)


class CommandAccepted(BaseModel):
    """The command was applied (or had been: `duplicate`)."""

    ok: Literal[True] = True
    command_id: str
    aggregate_type: str
    aggregate_id: UUID
    version: int
    sequence: int
    event_types: list[str]
    duplicate: bool


class FieldError(BaseModel):
    """One invalid field of a refused command."""

    field: str
    message: str


class CommandError(BaseModel):
    """Why a command was refused: `code` is stable, `type` names the error class."""

    code: str
    type: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class CommandRefused(BaseModel):
    """The command was refused; nothing was appended."""

    ok: Literal[False] = False
    command_id: str | None
    error: CommandError


CommandReply = CommandAccepted | CommandRefused
