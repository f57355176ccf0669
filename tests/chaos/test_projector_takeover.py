"""Two `sutazai projections run` processes for one projector: one applies, one waits on the lease;
SIGKILL the first and the second takes over within about one lease."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from argon2 import PasswordHasher
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandContext
from domain.task import SubmitTask
from projections.runtime import wait_for_sequence
from runtime.bootstrap import Platform, connect
from runtime.servers.process import dies_with_owner
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.servers import SUTAZAI, free_port, isolated_settings, scratch_dir, wait_for_line

pytestmark = pytest.mark.phase_timeout(180)

LEASE = 3.0
SLACK = 3.0
"""Process start-up, a poll that just missed, a loaded 2-core machine."""


@pytest.fixture
async def platform(stack: Stack) -> AsyncIterator[Platform]:
    """A platform of its own NATS and a fresh database; Redis, graph, model server shared."""
    database = f"takeover_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    own = isolated_settings(
        scratch_dir(),
        nats_port=free_port(),
        postgres_url=f"{stack.postgres_url.rsplit('/', 1)[0]}/{database}",
        redis_url=stack.redis_url,
        graph_url=stack.graph_url,
        ollama_host=stack.model_url,
        projection_lease_seconds=LEASE,
    )
    servers = Stack(own)
    await servers.start()
    try:
        passwords = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        async with connect(own, servers, passwords=passwords) as connected:
            yield connected
    finally:
        await servers.stop()


def _environment(settings: Settings, stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUTAZAI_")}
    env.update(
        {
            "SUTAZAI_DATA_DIR": str(settings.data_dir),
            "SUTAZAI_NATS_URL": stack.nats_url,
            "SUTAZAI_POSTGRES_URL": stack.postgres_url,
            "SUTAZAI_REDIS_URL": stack.redis_url,
            "SUTAZAI_GRAPH_URL": stack.graph_url,
            "OLLAMA_HOST": stack.model_url,
            "SUTAZAI_PROJECTION_LEASE_SECONDS": str(LEASE),
            "SUTAZAI_LOG_FORMAT": "json",
        }
    )
    return env


def _projector_process(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        dies_with_owner([SUTAZAI, "projections", "run", "--only", "tasks"]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


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
    env = _environment(platform.settings, platform.stack)
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
