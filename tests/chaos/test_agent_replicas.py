"""Two replicas of the task coordinator share its durable consumer: SIGKILL one and the other
goes on assigning every task, including one the dead replica may have been holding."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from uuid import UUID

import pytest
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandContext
from domain.agent import AgentKind
from domain.task import SubmitTask
from handlers.presence import heartbeats, register
from runtime.bootstrap import Platform
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.chaos.platforms import cli_environment, own_platform
from tests.servers import free_port, sutazai_process, wait_for_line

pytestmark = pytest.mark.phase_timeout(240)

TASK_TYPE = "test.replicas"
ASSIGNED_WITHIN = 30.0


def _coordinator(env: dict[str, str], replica: str) -> subprocess.Popen[str]:
    return sutazai_process(env, "agents", "run", "--only", "task-coordinator", "--replica", replica)


async def _submit(platform: Platform, count: int) -> list[UUID]:
    ids = []
    for _ in range(count):
        task = SubmitTask(task_id=uuid7(), owner_id=uuid7(), task_type=TASK_TYPE)
        context = CommandContext(command_id=str(uuid7()), actor=Actor(id="t", kind="system"))
        await platform.commands.bus.execute(task, context)
        ids.append(task.task_id)
    return ids


async def _until_assigned(platform: Platform, task_ids: list[UUID]) -> None:
    deadline = time.monotonic() + ASSIGNED_WITHIN
    waiting = set(task_ids)
    while waiting:
        for task_id in list(waiting):
            events = [
                r.envelope.event_type
                async for r in platform.store.aggregate_events("task", task_id)
            ]
            if "TaskAssigned" in events:
                waiting.discard(task_id)
        assert time.monotonic() < deadline, f"{len(waiting)} tasks never assigned"
        await asyncio.sleep(0.1)


async def test_a_surviving_coordinator_replica_keeps_assigning(stack: Stack) -> None:
    # A NATS of its own: the coordinators' durable consumer here gets a short ack wait, so an
    # event the killed replica was holding comes back to the survivor within seconds.
    async with own_platform(stack, "replicas", nats_port=free_port()) as platform:
        env = cli_environment(platform, agent_ack_wait="3", coordinator_sweep_seconds="0.5")
        worker = await register(
            platform.commands.bus,
            name=f"replica-worker-{uuid4().hex[:6]}",
            kind=AgentKind.CUSTOM,
            capabilities=[TASK_TYPE],
            model="none",
        )
        async with heartbeats(platform.store, platform.commands.bus, worker, every=0.5):
            doomed, survivor = _coordinator(env, "ra"), _coordinator(env, "rb")
            try:
                for process in (doomed, survivor):
                    await asyncio.to_thread(wait_for_line, process, "Agents running", 90)
                await _until_assigned(platform, await _submit(platform, 4))

                # Mid-stream: tasks keep coming while one replica dies.
                during = asyncio.create_task(_submit(platform, 6))
                await asyncio.sleep(0.05)
                os.killpg(doomed.pid, signal.SIGKILL)
                await asyncio.to_thread(doomed.wait)
                after = await _submit(platform, 4)
                await _until_assigned(platform, [*await during, *after])
                assert survivor.poll() is None
            finally:
                for process in (doomed, survivor):
                    if process.poll() is None:
                        os.killpg(process.pid, signal.SIGTERM)
                        await asyncio.to_thread(process.wait, 20)
