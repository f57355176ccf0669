"""Postgres projections on the real servers: exactly once, resumable, caught up after outages."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence

import asyncpg
import pytest
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandBus
from domain.task import AssignTask, StartTask
from eventstore.store import EventStore
from projections.event_log import EventLogProjector
from projections.migrate import migrate
from projections.poison import ProjectorStopped
from projections.read_models import projector_named
from projections.rebuild import rebuild, verify
from projections.runtime import Connection, ProjectionRunner, checkpoint_of, wait_for_sequence
from schemas.envelope import RecordedEvent
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
        ProjectionRunner(event_store, postgres, projector_named("tasks"), batch_size=7)
        for _ in range(2)
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
    runner = ProjectionRunner(event_store, postgres, projector_named("tasks"))
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
    runner = ProjectionRunner(event_store, postgres, projector_named("tasks"), idle_poll=0.2)
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


class FussyProjector:
    """Counts task events in its own table, and cannot stand one particular task."""

    version = 1
    subject_filter = "sutazai.events.task.*.*"

    def __init__(self, name: str, poison_task: object) -> None:
        self.name = name
        self.poison_task = poison_task
        self.tables: tuple[str, ...] = (name,)

    def retarget(self, tables: Mapping[str, str]) -> FussyProjector:
        return FussyProjector(tables.get(self.name, self.name), self.poison_task)

    async def apply_batch(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            if event.envelope.aggregate_id == self.poison_task:
                raise ValueError("this projector cannot apply that task")
            await connection.execute(
                f"INSERT INTO {self.name} (sequence) VALUES ($1)",
                event.sequence,
            )


async def _fussy(postgres: asyncpg.Pool, bus: CommandBus) -> tuple[FussyProjector, int, int]:
    name = f"fussy_{uuid4().hex[:12]}"
    await postgres.execute(f"CREATE TABLE {name} (sequence bigint PRIMARY KEY)")
    poison = new_submission()
    before = await bus.execute(new_submission(), context())
    bad = await bus.execute(poison, context())
    after = await bus.execute(new_submission(), context())
    assert before.sequence < bad.sequence < after.sequence
    return FussyProjector(name, poison.task_id), bad.sequence, after.sequence


async def test_a_poison_event_is_parked_and_the_projector_stops_where_it_is(
    bus: CommandBus, event_store: EventStore, postgres: asyncpg.Pool
) -> None:
    projector, bad, _ = await _fussy(postgres, bus)
    runner = ProjectionRunner(event_store, postgres, projector, batch_size=1000)
    with pytest.raises(ProjectorStopped) as stopped:
        await runner.catch_up()
    assert stopped.value.sequence == bad
    row = await postgres.fetchrow(
        "SELECT sequence, status, error, error_sequence FROM projection_checkpoints"
        " WHERE name = $1",
        projector.name,
    )
    assert row is not None
    assert (row["sequence"], row["status"], row["error_sequence"]) == (bad - 1, "stopped", bad)
    assert "cannot apply" in row["error"]
    assert await postgres.fetchval(f"SELECT max(sequence) FROM {projector.name}") < bad
    dlq = await event_store.client.jetstream().get_last_msg(
        "SUTAZAI_DLQ", f"sutazai.dlq.{projector.name}"
    )
    assert dlq.headers is not None
    assert dlq.headers["Sutazai-Stream-Sequence"] == str(bad)
    assert "cannot apply" in dlq.headers["Sutazai-Error"]

    # Started again it meets the same event again: it stops again, and the DLQ holds it once.
    with pytest.raises(ProjectorStopped):
        await runner.catch_up()
    info = await event_store.client.jetstream().stream_info(
        "SUTAZAI_DLQ", subjects_filter=f"sutazai.dlq.{projector.name}"
    )
    assert info.state.subjects == {f"sutazai.dlq.{projector.name}": 1}


async def test_under_the_skip_policy_a_poison_event_is_parked_recorded_and_passed(
    bus: CommandBus, event_store: EventStore, postgres: asyncpg.Pool
) -> None:
    projector, bad, after = await _fussy(postgres, bus)
    runner = ProjectionRunner(
        event_store, postgres, projector, batch_size=1000, poison_policy="skip"
    )
    assert await runner.catch_up() >= after
    applied = {
        row["sequence"] for row in await postgres.fetch(f"SELECT sequence FROM {projector.name}")
    }
    assert bad not in applied
    assert after in applied
    row = await postgres.fetchrow(
        "SELECT status, error_sequence FROM projection_checkpoints WHERE name = $1", projector.name
    )
    assert row is not None
    assert (row["status"], row["error_sequence"]) == ("running", bad)


async def test_verify_finds_the_live_read_model_equal_to_a_fresh_rebuild_and_catches_a_change(
    bus: CommandBus, event_store: EventStore, postgres: asyncpg.Pool
) -> None:
    await _some_tasks(bus, 5)
    for name in ("tasks", "event_log"):
        await ProjectionRunner(
            event_store, postgres, projector_named(name), batch_size=3
        ).catch_up()
        checks = await verify(event_store, postgres, projector_named(name))
        assert checks, name
        assert all(check.matches for check in checks), checks
        assert checks[0].live_rows > 0

    # A row changed behind the projector's back is found.
    changed = await postgres.fetchval(
        "UPDATE tasks SET priority = priority + 1"
        " WHERE task_id = (SELECT task_id FROM tasks LIMIT 1) RETURNING task_id"
    )
    try:
        checks = await verify(event_store, postgres, projector_named("tasks"))
    finally:
        # Put it back: later tests verify the same shared read model.
        await postgres.execute(
            "UPDATE tasks SET priority = priority - 1 WHERE task_id = $1", changed
        )
    assert not checks[0].matches
    assert not await postgres.fetchval(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'verify_%'"
    )


async def test_rebuild_while_commands_keep_arriving_never_fails_a_query_and_verifies(
    bus: CommandBus, event_store: EventStore, postgres: asyncpg.Pool
) -> None:
    await _some_tasks(bus, 10)
    tasks = projector_named("tasks")
    stop = asyncio.Event()
    live = asyncio.create_task(
        ProjectionRunner(event_store, postgres, tasks, idle_poll=0.1).run(stop)
    )
    failures: list[BaseException] = []
    answered = 0

    async def keep_writing() -> None:
        while not stop.is_set():
            await _some_tasks(bus, 1)

    async def keep_reading() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                await postgres.fetchval("SELECT count(*) FROM tasks WHERE status = 'running'")
                answered += 1
            except Exception as error:  # any failed query fails the test
                failures.append(error)
            await asyncio.sleep(0.005)

    writer = asyncio.create_task(keep_writing())
    reader = asyncio.create_task(keep_reading())
    seen: list[tuple[int, int]] = []
    report = await rebuild(
        event_store, postgres, tasks, progress=lambda done, aim: seen.append((done, aim))
    )
    await asyncio.sleep(0.3)  # writes and reads go on against the switched tables
    stop.set()
    await asyncio.gather(writer, reader, live)

    assert failures == []
    assert answered > 10
    assert report.version >= 2
    assert seen
    assert seen[-1][0] == seen[-1][1]
    await ProjectionRunner(event_store, postgres, tasks).catch_up()
    checks = await verify(event_store, postgres, tasks)
    assert all(check.matches for check in checks), checks
    expected = await _task_events(event_store)
    rows = await postgres.fetch("SELECT task_id, events_applied FROM tasks")
    assert {row["task_id"]: row["events_applied"] for row in rows} == dict(expected)
