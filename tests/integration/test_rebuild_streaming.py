"""Rebuilds that COPY while they read (projections/streaming.py) and the replay's own connection
(eventstore/wire_replay.py), on a NATS of their own: one test writes an undecodable event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import msgspec
import pytest
from uuid_utils.compat import uuid7

from commands.bus import CommandBus
from domain.task import AssignTask, CompleteTask, ReportTaskProgress, StartTask
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM, StreamLayout
from eventstore.wire_replay import wire_address, wire_replay
from projections import streaming
from projections.read_models import projector_named
from projections.rebuild import _checksums, build_into
from projections.runtime import ProjectionRunner
from schemas.envelope import EventEnvelope
from tests.servers import own_nats
from tests.tasks import context, new_submission


@pytest.fixture
async def own_store() -> AsyncIterator[EventStore]:
    """A NATS of its own: the events written here never reach the shared log."""
    async with own_nats() as server:
        store = await EventStore.connect(server.url, timeout=5.0)
        await store.setup(StreamLayout())
        yield store
        await store.client.close()


@pytest.fixture
async def schemas(postgres: asyncpg.Pool) -> AsyncIterator[tuple[str, str]]:
    """Two scratch schemas, each with an empty `tasks` table of the live shape."""
    names = (f"live_{uuid4().hex[:10]}", f"built_{uuid4().hex[:10]}")
    for name in names:
        await postgres.execute(f"CREATE SCHEMA {name}")
        await postgres.execute(f"CREATE TABLE {name}.tasks (LIKE tasks INCLUDING ALL)")
    yield names
    for name in names:
        await postgres.execute(f"DROP SCHEMA {name} CASCADE")
        await postgres.execute("DELETE FROM projection_checkpoints WHERE name LIKE $1", f"%{name}")


async def _interleaved_tasks(bus: CommandBus, count: int) -> None:
    """Tasks submitted together, then each taken further in turn: long-lived aggregates."""
    submissions = [new_submission() for _ in range(count)]
    for submission in submissions:
        await bus.execute(submission, context())
    for submission in reversed(submissions):
        task_id = submission.task_id
        await bus.execute(AssignTask(task_id=task_id, agent_id=uuid7()), context())
        await bus.execute(StartTask(task_id=task_id), context())
    for submission in submissions[::2]:
        task_id = submission.task_id
        await bus.execute(ReportTaskProgress(task_id=task_id, percent=30), context())
        await bus.execute(CompleteTask(task_id=task_id, result={"ok": True}), context())


@pytest.mark.parametrize("window", [2, 1_000])
async def test_a_streamed_rebuild_equals_the_incremental_projector_even_when_rows_go_early(
    own_store: EventStore,
    postgres: asyncpg.Pool,
    schemas: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    window: int,
) -> None:
    # A window of 2 writes most tasks out before their later events: those take the late path.
    monkeypatch.setattr(streaming, "WINDOW", window)
    monkeypatch.setattr(streaming, "CHUNK", 1)
    applied_late: list[int] = []
    apply_late = streaming._apply_late

    async def counting(projector: Any, connection: Any, late: list[tuple[int, bytes]]) -> None:
        applied_late.append(len(late))
        await apply_late(projector, connection, late)

    monkeypatch.setattr(streaming, "_apply_late", counting)
    await _interleaved_tasks(CommandBus(own_store), 12)
    live_schema, built_schema = schemas
    tasks = projector_named("tasks")
    live = tasks.retarget({"tasks": f"{live_schema}.tasks"})
    built = tasks.retarget({"tasks": f"{built_schema}.tasks"})
    await ProjectionRunner(
        own_store, postgres, live, batch_size=5, checkpoint_name=f"tasks@{live_schema}"
    ).catch_up()

    events = await build_into(own_store, postgres, built, f"tasks@{built_schema}")

    assert events == await own_store.last_sequence()
    async with postgres.acquire() as connection:
        expected = await _checksums(connection, {"tasks": f"{live_schema}.tasks"})
        found = await _checksums(connection, {"tasks": f"{built_schema}.tasks"})
    assert found == expected
    assert found["tasks"][0] == 12
    assert (applied_late[0] > 0) == (window == 2), applied_late


async def test_a_rebuild_fails_loudly_on_an_undecodable_event_and_writes_nothing(
    own_store: EventStore, postgres: asyncpg.Pool, schemas: tuple[str, str]
) -> None:
    await _interleaved_tasks(CommandBus(own_store), 3)
    js = own_store.client.jetstream()
    await js.publish(f"sutazai.events.task.{uuid7()}.TaskStarted", b'{"aggregate_type": "task", ')
    _, built_schema = schemas
    built = projector_named("tasks").retarget({"tasks": f"{built_schema}.tasks"})

    with pytest.raises(msgspec.DecodeError):
        await build_into(own_store, postgres, built, f"tasks@{built_schema}")

    assert await postgres.fetchval(f"SELECT count(*) FROM {built_schema}.tasks") == 0


async def test_the_wire_replay_reads_what_the_store_holds_across_short_batches(
    own_store: EventStore,
) -> None:
    await _interleaved_tasks(CommandBus(own_store), 4)
    last = await own_store.last_sequence()
    address = wire_address(own_store.client.connected_url, own_store.client._server_info)
    assert address is not None
    stored = [(event.sequence, event.envelope) async for event in own_store.read()]

    # Batches of 3, cut short by a byte limit below two bodies: every request ahead is redone.
    read: list[tuple[int, bytes]] = []
    async for first, bodies in wire_replay(
        address,
        stream=EVENTS_STREAM,
        from_sequence=1,
        up_to_sequence=last,
        batch=3,
        max_bytes=900,
        timeout=5,
    ):
        read += [(first + offset, body) for offset, body in enumerate(bodies)]
    assert [sequence for sequence, _ in read] == list(range(1, last + 1))
    decoded = [(s, EventEnvelope.model_validate_json(body)) for s, body in read]
    assert decoded == stored
