"""Who may run a command on an aggregate, checked against the state the command is decided on."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from domain.errors import DomainError

Guard = Callable[[BaseModel | None], None]
"""Sees the aggregate's current state (None before it exists); raises `Forbidden` to refuse."""


class Forbidden(DomainError):
    """The actor may not run this command on this aggregate."""

    code = "FORBIDDEN"


def allow_all(state: BaseModel | None) -> None:
    """The guard of trusted callers (agents, the CLI, other programs on the command subjects)."""
