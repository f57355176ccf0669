"""Reading an aggregate through the server's subject index gives exactly the wildcard read."""

from __future__ import annotations

from uuid import UUID

from uuid_utils.compat import uuid7

from commands.bus import CommandBus
from commands.loading import fold, load_aggregate
from domain.aggregates import TASK
from domain.task import AssignTask, ReportTaskProgress, StartTask
from eventstore.aggregate_read import PAGE
from eventstore.store import EventStore
from schemas.envelope import RecordedEvent
from tests.tasks import context, new_submission


async def _task_with_progress(bus: CommandBus, reports: int) -> UUID:
    submission = new_submission()
    await bus.execute(submission, context())
    await bus.execute(AssignTask(task_id=submission.task_id, agent_id=uuid7()), context())
    await bus.execute(StartTask(task_id=submission.task_id), context())
    for percent in range(1, reports + 1):
        await bus.execute(
            ReportTaskProgress(task_id=submission.task_id, percent=percent), context()
        )
    return submission.task_id


async def _by_wildcard(store: EventStore, task_id: UUID) -> list[RecordedEvent]:
    return [event async for event in store.aggregate_events("task", task_id)]


async def test_each_event_type_once_is_read_whole(bus: CommandBus, event_store: EventStore) -> None:
    task_id = await _task_with_progress(bus, reports=1)
    history = await event_store.aggregate_history("task", task_id)
    assert history == await _by_wildcard(event_store, task_id)
    assert [e.envelope.event_type for e in history or []] == [
        "TaskSubmitted",
        "TaskAssigned",
        "TaskStarted",
        "TaskProgressReported",
    ]


async def test_a_repeated_event_type_is_read_subject_by_subject(
    bus: CommandBus, event_store: EventStore
) -> None:
    task_id = await _task_with_progress(bus, reports=5)
    history = await event_store.aggregate_history("task", task_id)
    assert history is not None
    assert len(history) == 8
    assert history == await _by_wildcard(event_store, task_id)


async def test_an_aggregate_with_no_events_reads_empty(event_store: EventStore) -> None:
    assert await event_store.aggregate_history("task", uuid7()) == []


async def test_more_than_a_page_of_one_type_falls_back_to_the_wildcard_read(
    bus: CommandBus, event_store: EventStore
) -> None:
    task_id = await _task_with_progress(bus, reports=PAGE + 1)
    assert await event_store.aggregate_history("task", task_id) is None
    events = await _by_wildcard(event_store, task_id)
    loaded = await load_aggregate(event_store, TASK, task_id, use_snapshot=False)
    expected = fold(TASK, events, task_id)
    assert (loaded.state, loaded.version, loaded.sequence, loaded.commands) == (
        expected.state,
        expected.version,
        expected.sequence,
        expected.commands,
    )
    assert loaded.version == PAGE + 4
