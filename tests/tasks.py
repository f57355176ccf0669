"""Builders of task commands for tests."""

from __future__ import annotations

from uuid import UUID

from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandContext
from domain.task import SubmitTask
from schemas.envelope import Actor

OWNER = UUID("01900000-0000-7000-8000-000000000001")
ALICE = Actor(id=str(OWNER), kind="user")


def new_submission(**overrides: object) -> SubmitTask:
    """A valid SubmitTask for a fresh task id.

    Tests that run no agent submit task types no agent does (`test.*`): tests share one log, and
    a later test's agents would otherwise be handed this work before their own.
    """
    values: dict[str, object] = {
        "task_id": uuid7(),
        "owner_id": OWNER,
        "task_type": "test.generate",
        "priority": 3,
        "payload": {"prompt": "write fizzbuzz"},
    }
    values.update(overrides)
    return SubmitTask.model_validate(values)


def context(command_id: str | None = None, **overrides: object) -> CommandContext:
    """A command context with a fresh command id unless one is given."""
    return CommandContext(command_id=command_id or str(uuid4()), actor=ALICE, **overrides)  # type: ignore[arg-type]
