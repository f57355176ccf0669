"""The event store and the command bus against the real nats-server: the log's guarantees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType
from nats.js.errors import KeyNotFoundError
from uuid_utils.compat import uuid7

from commands.bus import BusPolicy, CommandBus, CommandResult
from commands.loading import fold, load_aggregate
from domain.aggregates import TASK
from domain.errors import AggregateAlreadyExists, IllegalTransition
from domain.task import AssignTask, ReportTaskProgress, StartTask, Task, TaskStatus
from eventstore.errors import (
    ConcurrencyConflict,
    EventTooLarge,
    StoreUnavailable,
    StreamConfigConflict,
)
from eventstore.store import EventStore
from eventstore.streams import (
    AGENTS_BUCKET,
    EVENTS_STREAM,
    StreamLayout,
    ensure_stream,
    events_stream,
)
from runtime.stack import Stack
from schemas.envelope import EventEnvelope, RecordedEvent
from tests.conftest import ServerFaults
from tests.servers import own_nats
from tests.tasks import ALICE, context, new_submission


async def _events_of(store: EventStore, task_id: UUID) -> list[RecordedEvent]:
    return [event async for event in store.aggregate_events("task", task_id)]


async def _running_task(bus: CommandBus) -> UUID:
    submission = new_submission()
    await bus.execute(submission, context())
    await bus.execute(AssignTask(task_id=submission.task_id, agent_id=uuid7()), context())
    await bus.execute(StartTask(task_id=submission.task_id), context())
    return submission.task_id


async def test_fifty_concurrent_commands_get_gapless_versions_or_a_typed_conflict(
    bus: CommandBus, event_store: EventStore
) -> None:
    task_id = await _running_task(bus)
    commands = [ReportTaskProgress(task_id=task_id, percent=n, note=f"step {n}") for n in range(50)]

    outcomes = await asyncio.gather(
        *(bus.execute(command, context()) for command in commands), return_exceptions=True
    )

    applied = [o for o in outcomes if isinstance(o, CommandResult)]
    conflicts = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
    assert len(applied) + len(conflicts) == 50, [o for o in outcomes if isinstance(o, Exception)]
    assert applied, "no command got through"
    events = await _events_of(event_store, task_id)
    versions = [event.envelope.aggregate_version for event in events]
    assert versions == list(range(1, len(events) + 1))
    assert len(events) == 3 + len(applied)
    # Each applied command landed on its own fresh version.
    assert sorted(result.version for result in applied) == list(range(4, 4 + len(applied)))
    assert {r.sequence for r in applied} == {e.sequence for e in events[3:]}
    # The state the bus sees is the fold of the log.
    loaded = await load_aggregate(event_store, TASK, task_id)
    assert loaded.state == fold(TASK, events, task_id).state
    assert loaded.version == len(events)


async def test_the_same_command_twice_appends_one_event_set(
    bus: CommandBus, event_store: EventStore
) -> None:
    submission = new_submission()
    same = context("submit-once-" + str(uuid7()))

    first = await bus.execute(submission, same)
    again = await bus.execute(submission, same)

    assert not first.duplicate
    assert again.duplicate
    assert (again.version, again.sequence, again.event_types) == (
        first.version,
        first.sequence,
        first.event_types,
    )
    assert len(await _events_of(event_store, submission.task_id)) == 1


async def test_a_different_command_on_an_existing_task_is_a_typed_error(bus: CommandBus) -> None:
    submission = new_submission()
    await bus.execute(submission, context())
    with pytest.raises(AggregateAlreadyExists):
        await bus.execute(submission, context())
    with pytest.raises(IllegalTransition):
        await bus.execute(StartTask(task_id=submission.task_id), context())


@pytest.fixture
async def short_window_store() -> AsyncIterator[EventStore]:
    """A NATS of its own whose event stream forgets message ids after half a second."""
    async with own_nats() as server:
        store = await EventStore.connect(server.url, timeout=2.0)
        await store.setup(StreamLayout(duplicate_window=0.5))
        yield store
        await store.client.close()


async def test_the_same_command_after_the_dedupe_window_still_appends_once(
    short_window_store: EventStore,
) -> None:
    bus = CommandBus(short_window_store)
    task_id = await _running_task(bus)
    progress = ReportTaskProgress(task_id=task_id, percent=40)
    same = context()

    first = await bus.execute(progress, same)
    await asyncio.sleep(1.2)  # past the stream's duplicate window: JetStream forgot the msg id
    again = await bus.execute(progress, same)

    assert again.duplicate
    assert again.sequence == first.sequence
    events = await _events_of(short_window_store, task_id)
    assert [e.envelope.event_type for e in events].count("TaskProgressReported") == 1


def _envelopes(task_id: UUID, first_version: int, command_id: str) -> list[EventEnvelope]:
    agent = str(uuid7())
    bodies = [
        (
            "TaskSubmitted",
            {
                "task_id": str(task_id),
                "owner_id": ALICE.id,
                "task_type": "test.review",
                "priority": 2,
                "payload": {},
                "max_attempts": 3,
            },
        ),
        ("TaskAssigned", {"agent_id": agent}),
        ("TaskStarted", {"agent_id": agent, "attempt": 1}),
    ]
    return [
        EventEnvelope(
            event_id=uuid7(),
            event_type=event_type,
            schema_version=1,
            aggregate_type="task",
            aggregate_id=task_id,
            aggregate_version=first_version + index,
            occurred_at=datetime.now(UTC),
            actor=ALICE,
            command_id=command_id,
            correlation_id=command_id,
            data=data,
        )
        for index, (event_type, data) in enumerate(bodies)
    ]


async def test_a_rejected_three_event_batch_leaves_the_log_unchanged(
    event_store: EventStore,
) -> None:
    task_id = uuid7()
    stored = await event_store.append(_envelopes(task_id, 1, f"a-{uuid7()}"), expected_sequence=0)
    assert stored.last_sequence - stored.first_sequence == 2
    before = await event_store.last_sequence()

    with pytest.raises(ConcurrencyConflict):
        await event_store.append(_envelopes(task_id, 4, f"b-{uuid7()}"), expected_sequence=0)

    assert await event_store.last_sequence() == before
    events = await _events_of(event_store, task_id)
    assert [e.sequence for e in events] == list(range(stored.first_sequence, before + 1))
    assert {e.envelope.command_id for e in events} == {events[0].envelope.command_id}


async def test_an_event_too_large_is_refused_before_anything_is_sent(
    event_store: EventStore, nats_client: NatsClient
) -> None:
    task_id = uuid7()
    envelopes = _envelopes(task_id, 1, f"big-{uuid7()}")
    huge = envelopes[1].model_copy(update={"data": {"agent_id": "x" * nats_client.max_payload}})
    before = await event_store.last_sequence()
    with pytest.raises(EventTooLarge):
        await event_store.append([envelopes[0], huge, envelopes[2]], expected_sequence=0)
    assert await event_store.last_sequence() == before


async def test_an_acknowledged_event_survives_kill_9_and_an_outage_fails_fast(
    stack: Stack, server_faults: ServerFaults
) -> None:
    store = await EventStore.connect(stack.nats_url, timeout=2.0, name="kill-test")
    client = store.client
    await store.setup(StreamLayout())
    bus = CommandBus(store)
    submission = new_submission()
    acknowledged = await bus.execute(submission, context())

    server_faults.kill("nats")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await bus.execute(new_submission(), context())
    assert time.monotonic() - started < 1.0  # the store's timeout is 2 s: it was not waited out

    await server_faults.restart("nats")
    deadline = time.monotonic() + 10
    while not client.is_connected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    events = await _events_of(store, submission.task_id)
    assert [e.sequence for e in events] == [acknowledged.sequence]
    assert events[0].envelope.event_type == "TaskSubmitted"
    await client.close()


async def test_stream_setup_updates_in_place_and_refuses_what_it_cannot_change(
    short_window_store: EventStore,
) -> None:
    store = short_window_store
    bus = CommandBus(store)
    await _running_task(bus)
    js = store.client.jetstream()
    count = (await js.stream_info(EVENTS_STREAM)).state.messages

    await store.setup(StreamLayout(duplicate_window=30))  # again, with a changed window
    info = await js.stream_info(EVENTS_STREAM)
    assert info.config.duplicate_window == 30
    assert info.config.allow_atomic
    assert info.config.allow_direct
    assert info.state.messages == count

    in_memory = events_stream(StreamLayout(duplicate_window=30))
    in_memory.storage = StorageType.MEMORY
    with pytest.raises(StreamConfigConflict, match="storage"):
        await ensure_stream(js, in_memory)
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == count

    # The heartbeat bucket takes a new TTL in place, and its entries expire by it.
    await store.setup(StreamLayout(duplicate_window=30, heartbeat_ttl=1.0))
    assert (await js.stream_info(f"KV_{AGENTS_BUCKET}")).config.max_age == 1.0
    bucket = await js.key_value(AGENTS_BUCKET)
    await bucket.put("some-agent", b"{}")
    await asyncio.sleep(1.6)
    with pytest.raises(KeyNotFoundError):
        await bucket.get("some-agent")
    await store.setup(StreamLayout(duplicate_window=30))
    assert (await js.stream_info(f"KV_{AGENTS_BUCKET}")).config.max_age == 15.0


async def test_snapshots_shorten_loads_without_changing_state(
    event_store: EventStore,
) -> None:
    bus = CommandBus(event_store, policy=BusPolicy(snapshot_every=4))
    task_id = await _running_task(bus)
    for percent in range(10, 80, 10):
        await bus.execute(ReportTaskProgress(task_id=task_id, percent=percent), context())

    snapshot = await event_store.snapshots.get("task", task_id)
    assert snapshot is not None
    assert snapshot.version == 8
    with_snapshot = await load_aggregate(event_store, TASK, task_id)
    without = await load_aggregate(event_store, TASK, task_id, use_snapshot=False)
    assert with_snapshot.state == without.state
    assert (with_snapshot.version, with_snapshot.sequence) == (10, without.sequence)
    assert with_snapshot.events_since_snapshot == 2
    assert set(with_snapshot.commands) == set(without.commands)
    state = with_snapshot.state
    assert isinstance(state, Task)
    assert (state.status, state.progress) == (TaskStatus.RUNNING, 70)


async def test_reading_the_log_from_a_position_and_following_it(
    bus: CommandBus, event_store: EventStore
) -> None:
    first = await bus.execute(new_submission(), context())
    second = await bus.execute(new_submission(), context())

    stored = [e async for e in event_store.read(from_sequence=first.sequence)]
    assert [e.sequence for e in stored][:2] == [first.sequence, second.sequence]
    assert [e.sequence for e in stored] == sorted(e.sequence for e in stored)

    follower = event_store.read(from_sequence=second.sequence + 1, follow=True)
    later = await bus.execute(new_submission(), context())
    event = await asyncio.wait_for(anext(follower), timeout=5)
    assert event.sequence >= second.sequence + 1
    while event.sequence < later.sequence:
        event = await asyncio.wait_for(anext(follower), timeout=5)
    assert event.sequence == later.sequence
    await follower.aclose()  # type: ignore[attr-defined]


async def test_a_bus_with_a_stale_view_neither_refuses_wrongly_nor_overwrites(
    event_store: EventStore,
) -> None:
    here, elsewhere = CommandBus(event_store), CommandBus(event_store)
    submission = new_submission()
    await here.execute(submission, context())  # `here` now holds the task as pending
    task_id = submission.task_id

    await elsewhere.execute(AssignTask(task_id=task_id, agent_id=uuid7()), context())
    started = await here.execute(StartTask(task_id=task_id), context())  # stale: "pending"
    assert started.version == 3

    await elsewhere.execute(ReportTaskProgress(task_id=task_id, percent=10), context())
    progressed = await here.execute(ReportTaskProgress(task_id=task_id, percent=20), context())
    assert progressed.version == 5

    events = await _events_of(event_store, task_id)
    assert [e.envelope.aggregate_version for e in events] == [1, 2, 3, 4, 5]
    state = fold(TASK, events, task_id).state
    assert isinstance(state, Task)
    assert (state.status, state.progress) == (TaskStatus.RUNNING, 20)
