"""Audit questions answered from the log: who changed what, when, why, and the state back then."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime

import pytest
from uuid_utils.compat import uuid7

from commands.bus import CommandBus, CommandContext
from domain.task import AssignTask, StartTask, Task, TaskStatus
from eventstore.store import EventStore
from projections import audit
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.servers import cli_environment, run_sutazai
from tests.tasks import ALICE, context, new_submission

COORDINATOR = Actor(id="task-coordinator", kind="agent")


async def test_history_says_who_when_why_and_state_at_answers_for_a_version_and_a_time(
    bus: CommandBus, event_store: EventStore
) -> None:
    submission = new_submission()
    task_id = submission.task_id
    await bus.execute(submission, context(reason="customer asked", correlation_id="ticket-7"))
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    await asyncio.sleep(0.05)
    agent_id = uuid7()
    await bus.execute(
        AssignTask(task_id=task_id, agent_id=agent_id),
        CommandContext(
            command_id=f"assign-{uuid7()}", actor=COORDINATOR, reason="capability match"
        ),
    )
    await bus.execute(StartTask(task_id=task_id), context())

    changes = await audit.history(event_store, "task", task_id)
    assert [c.event_type for c in changes] == ["TaskSubmitted", "TaskAssigned", "TaskStarted"]
    assert [c.version for c in changes] == [1, 2, 3]
    assert (changes[0].actor, changes[0].reason, changes[0].correlation_id) == (
        ALICE,
        "customer asked",
        "ticket-7",
    )
    assert (changes[1].actor, changes[1].reason) == (COORDINATOR, "capability match")
    assert changes[1].command_id.startswith("assign-")

    at_two = await audit.state_at(event_store, "task", task_id, version=2)
    assert isinstance(at_two.state, Task)
    assert (at_two.version, at_two.state.status, at_two.state.agent_id) == (
        2,
        TaskStatus.ASSIGNED,
        agent_id,
    )
    then = await audit.state_at(event_store, "task", task_id, at=between)
    assert isinstance(then.state, Task)
    assert (then.version, then.state.status) == (1, TaskStatus.PENDING)
    now = await audit.state_at(event_store, "task", task_id)
    assert now.version == 3

    with pytest.raises(audit.UnknownAggregateType):
        await audit.history(event_store, "invoice", task_id)


async def test_the_audit_commands_print_history_and_past_state(
    stack: Stack, bus: CommandBus
) -> None:
    submission = new_submission()
    await bus.execute(submission, context(reason="nightly review"))
    await bus.execute(AssignTask(task_id=submission.task_id, agent_id=uuid7()), context())
    env = cli_environment(stack.settings)

    def sutazai(*args: str) -> subprocess.CompletedProcess[str]:
        return run_sutazai(env, *args)

    shown = await asyncio.to_thread(sutazai, "audit", "history", "task", str(submission.task_id))
    assert shown.returncode == 0, shown.stderr
    assert "TaskSubmitted" in shown.stdout
    assert "TaskAssigned" in shown.stdout
    assert "nightly review" in shown.stdout
    past = await asyncio.to_thread(
        sutazai, "audit", "show", "task", str(submission.task_id), "--at-version", "1"
    )
    assert past.returncode == 0, past.stderr
    assert "at version 1" in past.stdout
    assert "pending" in past.stdout
    unknown = await asyncio.to_thread(sutazai, "audit", "history", "invoice", str(uuid7()))
    assert unknown.returncode == 1  # a user error
