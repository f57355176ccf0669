"""kill -9 of the projector process at random points while 10,000 events are applied."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from collections import Counter

import asyncpg
from uuid_utils.compat import uuid7

from commands.bus import CommandBus
from domain.task import AssignTask, ReportTaskProgress, StartTask
from eventstore.store import EventStore
from projections.read_models import projector_named
from projections.rebuild import verify
from projections.runtime import checkpoint_of, wait_for_sequence
from runtime.servers.process import dies_with_owner
from runtime.stack import Stack
from tests.servers import SUTAZAI, cli_environment
from tests.tasks import context, new_submission

EVENTS = 10_000
PER_TASK = 5  # submit, assign, start, two progress reports


async def _ten_thousand_events(bus: CommandBus) -> int:
    gate = asyncio.Semaphore(32)
    last = 0

    async def one_task() -> None:
        nonlocal last
        async with gate:
            submission = new_submission()
            task_id = submission.task_id
            await bus.execute(submission, context())
            for command in (
                AssignTask(task_id=task_id, agent_id=uuid7()),
                StartTask(task_id=task_id),
                ReportTaskProgress(task_id=task_id, percent=30),
                ReportTaskProgress(task_id=task_id, percent=60),
            ):
                result = await bus.execute(command, context())
            last = max(last, result.sequence)

    await asyncio.gather(*(one_task() for _ in range(EVENTS // PER_TASK)))
    return last


def _start_projector(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        dies_with_owner([SUTAZAI, "projections", "run", "--only", "tasks", "--only", "event_log"]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def test_kill_9_of_the_projector_at_random_points_applies_every_event_once(
    stack: Stack, bus: CommandBus, event_store: EventStore, postgres: asyncpg.Pool
) -> None:
    env = cli_environment(stack.settings)
    env["SUTAZAI_PROJECTION_BATCH_SIZE"] = "150"  # many transactions to be killed in
    before = {name: await checkpoint_of(postgres, name) for name in ("tasks", "event_log")}
    writing = asyncio.create_task(_ten_thousand_events(bus))
    chance = random.Random()
    kills = 0
    progress = []
    while not writing.done() or kills < 5:
        started_at = await checkpoint_of(postgres, "tasks")
        projector = _start_projector(env)
        # Kill mid-work, not mid-start: once this process has applied a batch (a process takes
        # a while to start on a busy machine), at a random point after that.
        for _ in range(100):
            if await checkpoint_of(postgres, "tasks") > started_at:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(chance.uniform(0.0, 0.8))
        _kill(projector)
        kills += 1
        progress.append(await checkpoint_of(postgres, "tasks"))
    last = await writing

    projector = _start_projector(env)
    try:
        await wait_for_sequence(postgres, "tasks", last, timeout=120)
        await wait_for_sequence(postgres, "event_log", last, timeout=120)
    finally:
        _kill(projector)

    assert kills >= 5
    assert progress[-1] > before["tasks"], "the projector made progress between kills"
    counts: Counter[object] = Counter()
    async for event in event_store.read(subject_filter="sutazai.events.task.*.*"):
        counts[event.envelope.aggregate_id] += 1
    rows = await postgres.fetch("SELECT task_id, events_applied FROM tasks")
    applied = {row["task_id"]: row["events_applied"] for row in rows}
    assert applied == dict(counts)  # no event applied twice, none missed
    assert sum(applied.values()) >= EVENTS
    for name in ("tasks", "event_log"):
        checks = await verify(event_store, postgres, projector_named(name))
        assert all(check.matches for check in checks), checks
