"""The bus counts every command, its time and its lost races: what /metrics shows of it."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, generate_latest
from uuid_utils.compat import uuid7

from commands.bus import CommandBus, CommandContext
from domain.errors import DomainError
from domain.task import AssignTask, ReportTaskProgress, StartTask, SubmitTask
from eventstore.store import EventStore
from runtime.command_metrics import CommandMetrics
from schemas.envelope import Actor

ACTOR = Actor(id="metrics", kind="system")


def _context() -> CommandContext:
    return CommandContext(command_id=str(uuid7()), actor=ACTOR)


def _value(registry: CollectorRegistry, line_start: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_commands_their_outcomes_and_conflicts_are_counted(event_store: EventStore) -> None:
    registry = CollectorRegistry()
    bus = CommandBus(event_store, observer=CommandMetrics(registry))
    task_id = uuid7()
    await bus.execute(SubmitTask(task_id=task_id, owner_id=uuid7(), task_type="test.m"), _context())
    await bus.execute(AssignTask(task_id=task_id, agent_id=uuid7()), _context())
    await bus.execute(StartTask(task_id=task_id), _context())
    with contextlib.suppress(DomainError):
        await bus.execute(StartTask(task_id=task_id), _context())  # running already
    # A second bus (another process) writing the same task: the first bus's view goes stale.
    other = CommandBus(event_store)
    racing = [
        bus.execute(ReportTaskProgress(task_id=task_id, percent=p), _context()) for p in range(5)
    ]
    await asyncio.gather(
        *racing, other.execute(ReportTaskProgress(task_id=task_id, percent=50), _context())
    )

    submitted = 'sutazai_commands_total{command="SubmitTask",outcome="ok"}'
    refused = 'sutazai_commands_total{command="StartTask",outcome="ILLEGAL_TRANSITION"}'
    assert _value(registry, submitted) == 1
    assert _value(registry, refused) == 1
    assert (
        _value(registry, 'sutazai_commands_total{command="ReportTaskProgress",outcome="ok"}') == 5
    )
    assert _value(registry, 'sutazai_command_seconds_count{command="ReportTaskProgress"}') == 5
    assert _value(registry, 'sutazai_command_conflicts_total{command="ReportTaskProgress"}') >= 1
