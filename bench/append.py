"""Appends and aggregate reads against a bare nats-py baseline, side by side on one nats-server.

Prints one line per figure: `name  ours  baseline  ratio` (ratio = ours / baseline throughput,
higher is better), once with `sync_interval: always` (the platform's default: every write on
disk before its ack) and once with nats-server's own default (`2m`), so the price of the
guarantee is in view. Run with `make bench` or `.venv/bin/python -m bench.append`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy
from uuid_utils.compat import uuid7

from bench.common import own_nats
from commands.bus import BusPolicy, CommandBus, CommandContext
from domain.task import AssignTask, ReportTaskProgress, StartTask, SubmitTask
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM, StreamLayout
from runtime.structured_logging import configure_logging
from schemas.envelope import Actor, EventEnvelope, aggregate_subjects

ROUNDS = 2_000
IN_FLIGHT = 64
BATCH = 10
SMALL_ROUNDS = 300
EVENTS_PER_READ_TASK = 20
ACTOR = Actor(id="bench", kind="system")


def _envelope(aggregate_id: UUID, version: int, command_id: str) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid7(),
        event_type="TaskProgressReported",
        schema_version=1,
        aggregate_type="task",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        occurred_at=datetime.now(UTC),
        actor=ACTOR,
        command_id=command_id,
        correlation_id=command_id,
        data={"percent": version % 100, "note": "benchmark step"},
    )


async def _rate(count: int, work: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await work()
    return count / (time.perf_counter() - started)


async def _in_flight(items: Sequence[Callable[[], Awaitable[object]]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(item: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await item()

    await asyncio.gather(*(one(item) for item in items))


def _line(name: str, ours: float, baseline: float, unit: str) -> None:
    print(f"{name:<34} {ours:>10.0f} {baseline:>10.0f}  {ours / baseline:>5.2f}x  ({unit})")


async def single_appends(client: NatsClient, store: EventStore) -> None:
    """One event per append, one after another: our append vs js.publish of the same bytes."""
    js = client.jetstream()
    ours_envelopes = [_envelope(uuid7(), 1, f"o-{uuid7()}") for _ in range(ROUNDS)]
    base_envelopes = [_envelope(uuid7(), 1, f"b-{uuid7()}") for _ in range(ROUNDS)]

    async def ours() -> None:
        for envelope in ours_envelopes:
            await store.append([envelope], expected_sequence=0)

    async def baseline() -> None:
        for envelope in base_envelopes:
            await js.publish(
                envelope.subject, envelope.model_dump_json().encode(), headers=envelope.headers(0)
            )

    base = await _rate(ROUNDS, baseline)
    mine = await _rate(ROUNDS, ours)
    _line("append, single event", mine, base, "events/s")


async def pipelined_appends(client: NatsClient, store: EventStore) -> None:
    """Single-event appends with many in flight, against js.publish with as many in flight."""
    js = client.jetstream()
    ours_envelopes = [_envelope(uuid7(), 1, f"o-{uuid7()}") for _ in range(ROUNDS)]
    base_envelopes = [_envelope(uuid7(), 1, f"b-{uuid7()}") for _ in range(ROUNDS)]
    ours = [partial(store.append, [e], expected_sequence=0) for e in ours_envelopes]
    baseline = [
        partial(js.publish, e.subject, e.model_dump_json().encode(), headers=e.headers(0))
        for e in base_envelopes
    ]
    base = await _rate(ROUNDS, lambda: _in_flight(baseline, IN_FLIGHT))
    mine = await _rate(ROUNDS, lambda: _in_flight(ours, IN_FLIGHT))
    _line(f"append, {IN_FLIGHT} in flight", mine, base, "events/s")


async def batched_appends(client: NatsClient, store: EventStore) -> None:
    """A 10-event atomic batch per aggregate vs 10 acked js.publish calls per aggregate."""
    js = client.jetstream()
    aggregates = ROUNDS // BATCH

    def batch(prefix: str) -> list[EventEnvelope]:
        aggregate_id, command_id = uuid7(), f"{prefix}-{uuid7()}"
        return [_envelope(aggregate_id, v, command_id) for v in range(1, BATCH + 1)]

    ours_batches = [batch("o") for _ in range(aggregates)]
    base_batches = [batch("b") for _ in range(aggregates)]

    async def ours() -> None:
        for envelopes in ours_batches:
            await store.append(envelopes, expected_sequence=0)

    async def baseline() -> None:
        for envelopes in base_batches:
            for index, envelope in enumerate(envelopes):
                await js.publish(
                    envelope.subject,
                    envelope.model_dump_json().encode(),
                    headers=envelope.headers(index),
                )

    base = await _rate(ROUNDS, baseline)
    mine = await _rate(ROUNDS, ours)
    _line(f"append, atomic batch of {BATCH}", mine, base, "events/s")


async def commands(client: NatsClient, store: EventStore) -> None:
    """Whole commands (load, decide, append) vs js.publish of an event of the same size."""
    js = client.jetstream()
    bus = CommandBus(store, policy=BusPolicy(snapshot_every=0))
    task_ids = [uuid7() for _ in range(ROUNDS)]
    owner = uuid7()

    async def ours() -> None:
        for task_id in task_ids:
            await bus.execute(
                SubmitTask(task_id=task_id, owner_id=owner, task_type="code.generate"),
                CommandContext(command_id=str(uuid7()), actor=ACTOR),
            )

    body = _envelope(uuid7(), 1, "sample").model_dump_json().encode()

    async def baseline(count: int) -> None:
        for _ in range(count):
            subject = f"sutazai.events.task.{uuid7()}.X"
            await js.publish(subject, body, headers={"Nats-Msg-Id": str(uuid7())})

    base = await _rate(ROUNDS, lambda: baseline(ROUNDS))
    mine = await _rate(ROUNDS, ours)
    _line("command, submit task (new)", mine, base, "commands/s")

    agent = uuid7()
    for task_id in task_ids[:SMALL_ROUNDS]:
        for command in (AssignTask(task_id=task_id, agent_id=agent), StartTask(task_id=task_id)):
            await bus.execute(command, CommandContext(command_id=str(uuid7()), actor=ACTOR))

    def progress(on: CommandBus) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            for task_id in task_ids[:SMALL_ROUNDS]:
                await on.execute(
                    ReportTaskProgress(task_id=task_id, percent=50),
                    CommandContext(command_id=str(uuid7()), actor=ACTOR),
                )

        return run

    base = await _rate(SMALL_ROUNDS, lambda: baseline(SMALL_ROUNDS))
    mine = await _rate(SMALL_ROUNDS, progress(bus))
    _line("command, cached 3-event task", mine, base, "commands/s")
    # A bus that has not seen the tasks loads each one first (snapshot lookup + direct get).
    cold = CommandBus(store, policy=BusPolicy(snapshot_every=0))
    base = await _rate(SMALL_ROUNDS, lambda: baseline(SMALL_ROUNDS))
    mine = await _rate(SMALL_ROUNDS, progress(cold))
    _line("command, uncached 4-event task", mine, base, "commands/s")


async def aggregate_reads(client: NatsClient, store: EventStore) -> None:
    """Reading a 20-event aggregate's events: batch direct get vs an ordered consumer per read."""
    js = client.jetstream()
    task_ids = [uuid7() for _ in range(SMALL_ROUNDS)]
    for task_id in task_ids:
        command_id = f"l-{uuid7()}"
        envelopes = [_envelope(task_id, v, command_id) for v in range(1, EVENTS_PER_READ_TASK + 1)]
        await store.append(envelopes, expected_sequence=0)

    async def ours() -> None:
        for task_id in task_ids:
            events = [e async for e in store.aggregate_events("task", task_id)]
            assert len(events) == EVENTS_PER_READ_TASK

    async def by_consumer() -> None:
        for task_id in task_ids:
            subscription = await js.subscribe(
                aggregate_subjects("task", task_id),
                stream=EVENTS_STREAM,
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            )
            events: list[object] = []
            while len(events) < EVENTS_PER_READ_TASK:
                message = await subscription.next_msg(timeout=5)
                events.append(message)
            await subscription.unsubscribe()

    base = await _rate(SMALL_ROUNDS, by_consumer)
    mine = await _rate(SMALL_ROUNDS, ours)
    _line(f"read, {EVENTS_PER_READ_TASK}-event aggregate", mine, base, "reads/s, vs consumer")


SYNC_SETTINGS = ("always", "2m")
"""The platform's default (`SUTAZAI_NATS_SYNC=always`) and nats-server's own (sync every 2 min)."""


async def run(sync: str) -> None:
    """Every figure on one nats-server with this sync setting: ours and the baseline alike."""
    async with own_nats(sync=sync) as server:
        store = await EventStore.connect(server.url, timeout=10)
        client = store.client
        await store.setup(StreamLayout())
        print(f"\nsync_interval: {sync}")
        print(f"{'name':<34} {'ours':>10} {'baseline':>10}  ratio")
        await single_appends(client, store)
        await pipelined_appends(client, store)
        await batched_appends(client, store)
        await commands(client, store)
        await aggregate_reads(client, store)
        await client.close()


async def main() -> None:
    configure_logging(level="warning")
    for sync in SYNC_SETTINGS:
        await run(sync)


if __name__ == "__main__":
    asyncio.run(main())
