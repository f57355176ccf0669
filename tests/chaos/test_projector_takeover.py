"""Two `sutazai projections run` processes for one projector: one applies, one waits on the lease;
SIGKILL the first and the second takes over within about one lease."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator

import pytest
from uuid_utils.compat import uuid7

from commands.bus import CommandContext
from domain.task import SubmitTask
from projections.runtime import wait_for_sequence
from runtime.bootstrap import Platform
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.chaos.platforms import cli_environment, own_platform
from tests.servers import free_port, sutazai_process, wait_for_line

pytestmark = pytest.mark.phase_timeout(180)

LEASE = 3.0
SLACK = 3.0
"""Process start-up, a poll that just missed, a loaded 2-core machine."""


@pytest.fixture
async def platform(stack: Stack) -> AsyncIterator[Platform]:
    """A platform of its own NATS and a fresh database; Redis, graph, model server shared."""
    async with own_platform(
        stack, "takeover", nats_port=free_port(), projection_lease_seconds=LEASE
    ) as connected:
        yield connected


def _projector_process(env: dict[str, str]) -> subprocess.Popen[str]:
    return sutazai_process(env, "projections", "run", "--only", "tasks")


async def _line(process: subprocess.Popen[str], text: str, timeout: float) -> None:
    """Wait for a line holding `text`; past the timeout the process is killed (its output
    ends, so the reader returns) and the wait fails naming what it printed."""
    reading = asyncio.create_task(asyncio.to_thread(wait_for_line, process, text, timeout + 60))
    done, _ = await asyncio.wait([reading], timeout=timeout)
    if not done:
        os.killpg(process.pid, signal.SIGKILL)
    await reading


async def _submit(platform: Platform) -> int:
    command = SubmitTask(task_id=uuid7(), owner_id=uuid7(), task_type="test.takeover")
    context = CommandContext(command_id=str(uuid7()), actor=Actor(id="t", kind="system"))
    return (await platform.commands.bus.execute(command, context)).sequence


async def test_a_waiting_projector_takes_over_when_the_lease_holder_dies(
    platform: Platform,
) -> None:
    env = cli_environment(platform, projection_lease_seconds=str(LEASE))
    first = _projector_process(env)
    second: subprocess.Popen[str] | None = None
    try:
        await _line(first, "lease.acquired", 60)
        second = _projector_process(env)
        await _line(second, "lease.waiting", 60)

        applied_by_first = await _submit(platform)
        await wait_for_sequence(platform.postgres, "tasks", applied_by_first, timeout=15)

        os.killpg(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.to_thread(first.wait)
        after_kill = await _submit(platform)
        await _line(second, "lease.acquired", LEASE + SLACK + 5)
        await wait_for_sequence(platform.postgres, "tasks", after_kill, timeout=LEASE + SLACK)
        took = time.monotonic() - killed_at
        print(f"\nprojector takeover: {took:.2f}s after the holder died (lease {LEASE:g}s)")
        assert took < LEASE + SLACK
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                await asyncio.to_thread(process.wait, 20)
