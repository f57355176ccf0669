"""The coordinator's sweep: which refusals of its retries and time-outs it expects, which it shouts.

No servers: the bus, the read model and the presence bucket are stand-ins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
import pytest
from nats.js.kv import KeyValue
from pydantic import BaseModel
from structlog.testing import capture_logs

from commands.bus import CommandBus, CommandContext
from commands.guard import Forbidden, Guard, allow_all
from domain.errors import DomainError, IllegalTransition
from domain.task import RetryTask, TimeOutTask
from handlers import task_coordinator
from handlers.presence import AgentCard
from handlers.task_coordinator import TaskCoordinator

FAILED = uuid4()
OVERDUE = uuid4()


class ReadModel:
    """Answers the sweep's queries: one retryable failure, one task past its deadline."""

    async def fetch(self, query: str, *args: object) -> list[dict[str, Any]]:
        if "status = 'failed'" in query:
            return [{"task_id": FAILED, "version": 3}]
        if "deadline_seconds" in query:
            return [{"task_id": OVERDUE, "version": 5}]
        return []


class Bus:
    """Refuses each command with the error given for its type; records what it was sent."""

    def __init__(self, refusals: dict[type[BaseModel], DomainError]) -> None:
        self.refusals = refusals
        self.sent: list[BaseModel] = []

    async def execute(
        self, command: BaseModel, context: CommandContext, *, guard: Guard = allow_all
    ) -> None:
        self.sent.append(command)
        refusal = self.refusals.get(type(command))
        if refusal is not None:
            raise refusal


async def nobody_online(agents: KeyValue) -> Sequence[AgentCard]:
    return []


def coordinator(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> TaskCoordinator:
    monkeypatch.setattr(task_coordinator, "online_agents", nobody_online)
    return TaskCoordinator(
        cast(CommandBus, bus), cast(asyncpg.Pool, ReadModel()), cast(KeyValue, None)
    )


def moved_on(task_id: UUID, action: str) -> IllegalTransition:
    return IllegalTransition("task", task_id, "completed", action)


@pytest.mark.parametrize("refused", [RetryTask, TimeOutTask])
async def test_a_forbidden_retry_or_time_out_is_logged_as_an_error(
    refused: type[BaseModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = Bus({refused: Forbidden("the coordinator may not do this")})
    with capture_logs() as logs:
        await coordinator(bus, monkeypatch).sweep()
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [(e["event"], e["code"], e["command"]) for e in errors] == [
        ("coordinator.refused", "FORBIDDEN", refused.__name__)
    ]
    # The refusal of one task does not keep the sweep from the others.
    assert [type(command) for command in bus.sent] == [RetryTask, TimeOutTask]


async def test_a_task_that_moved_on_is_skipped_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = Bus({RetryTask: moved_on(FAILED, "retry"), TimeOutTask: moved_on(OVERDUE, "time out")})
    with capture_logs() as logs:
        await coordinator(bus, monkeypatch).sweep()
    assert {entry["log_level"] for entry in logs} == {"info"}
    assert [(entry["event"], entry["code"]) for entry in logs] == [
        ("coordinator.not_settled", "ILLEGAL_TRANSITION"),
        ("coordinator.not_settled", "ILLEGAL_TRANSITION"),
    ]
