"""Postgres projections on the real servers: exactly once, resumable, caught up after outages."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
from uuid_utils.compat import uuid7

from commands.bus import CommandBus
from domain.task import AssignTask, StartTask
from eventstore.store import EventStore
from projections.event_log import EventLogProjector
from projections.migrate import migrate
from projections.runtime import ProjectionRunner, checkpoint_of, wait_for_sequence
from projections.tasks import TasksProjector
from tests.conftest import ServerFaults
from tests.tasks import context, new_submission


async def _task_events(store: EventStore) -> Counter[object]:
    counts: Counter[object] = Counter()
    async for event in store.read(subject_filter="sutazai.events.task.*.*"):
        counts[event.envelope.aggregate_id] += 1
    return counts


async def _some_tasks(bus: CommandBus, count: int) -> int:
    last = 0
    for _ in range(count):
        submission = new_submission()
        await bus.execute(submission, context())
        await bus.execute(AssignTask(task_id=submission.task_id, agent_id=uuid7()), context())
        result = await bus.execute(StartTask(task_id=submission.task_id), context())
        last = result.sequence
    return last


async def test_migrations_apply_once(postgres: asyncpg.Pool) -> None:
    assert await migrate(postgres) == []
    assert await postgres.fetchval("SELECT count(*) FROM schema_migrations") >= 1


async def test_two_runners_racing_apply_every_event_exactly_once(
    bus: CommandBus, event_store: EventStore, postgres: asyncpg.Pool
) -> None:
    await _some_tasks(bus, 20)
    tasks = [
        ProjectionRunner(event_store, postgres, TasksProjector(), batch_size=7) for _ in range(2)
    ]
    logs = [
        ProjectionRunner(event_store, postgres, EventLogProjector(), batch_size=50)
        for _ in range(2)
    ]

    await asyncio.gather(*(runner.catch_up() for runner in (*tasks, *logs)))

    expected = await _task_events(event_store)
    rows = await postgres.fetch("SELECT task_id, events_applied FROM tasks")
    assert {row["task_id"]: row["events_applied"] for row in rows} == dict(expected)
    last = await event_store.last_sequence()
    assert await checkpoint_of(postgres, "event_log") == last
    assert await postgres.fetchval("SELECT count(*) FROM event_log") == await postgres.fetchval(
        "SELECT count(DISTINCT sequence) FROM event_log"
    )
    assert await postgres.fetchval("SELECT max(sequence) FROM event_log") == last


async def test_a_running_projector_gives_read_your_writes(
    bus: CommandBus, event_store: EventStore, postgres: asyncpg.Pool
) -> None:
    stop = asyncio.Event()
    runner = ProjectionRunner(event_store, postgres, TasksProjector())
    running = asyncio.create_task(runner.run(stop))
    try:
        submission = new_submission(priority=1)
        await bus.execute(submission, context())
        result = await bus.execute(
            AssignTask(task_id=submission.task_id, agent_id=uuid7()), context()
        )
        await wait_for_sequence(postgres, "tasks", result.sequence, timeout=5)
        row = await postgres.fetchrow(
            "SELECT status, priority, version FROM tasks WHERE task_id = $1", submission.task_id
        )
        assert row is not None
        assert (row["status"], row["priority"], row["version"]) == ("assigned", 1, 2)
    finally:
        stop.set()
        await running


async def test_the_projector_catches_up_by_itself_after_postgres_is_killed(
    bus: CommandBus,
    event_store: EventStore,
    postgres: asyncpg.Pool,
    server_faults: ServerFaults,
) -> None:
    stop = asyncio.Event()
    runner = ProjectionRunner(event_store, postgres, TasksProjector(), idle_poll=0.2)
    running = asyncio.create_task(runner.run(stop))
    try:
        await wait_for_sequence(postgres, "tasks", await _some_tasks(bus, 2), timeout=10)
        server_faults.kill("postgres")
        written_meanwhile = await _some_tasks(bus, 5)
        await server_faults.restart("postgres")
        await wait_for_sequence(postgres, "tasks", written_meanwhile, timeout=20)
    finally:
        stop.set()
        await running
    expected = await _task_events(event_store)
    rows = await postgres.fetch("SELECT task_id, events_applied FROM tasks")
    assert {row["task_id"]: row["events_applied"] for row in rows} == dict(expected)
