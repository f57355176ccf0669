"""Rebuild of the tasks read model from the log vs a bare asyncpg COPY of the same final rows.

Writes SUTAZAI_BENCH_EVENTS events (default 1,000,000: tasks of five events each) on a NATS and
a PostgreSQL of its own, rebuilds `tasks` with `projections.rebuild`, then copies the rows the
rebuild produced into an empty table of the same shape with `copy_records_to_table`. Prints
`name  ours  baseline  ratio` (ratio = baseline seconds / our seconds: 1.0 is as fast as COPY),
then the same against only reading the log with bare nats-py (batch direct get, nothing
decoded): the part of a rebuild no decoding, folding or COPY can win back.

The rebuild runs in a child process of its own (`--rebuild NATS_URL POSTGRES_URL`), so that the
peak RSS printed beside it is the rebuild's own (the bench process has built every event it
wrote), taken by the child from getrusage when the rebuild is done.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import nats
from nats.aio.msg import Msg
from pydantic import JsonValue
from uuid_utils.compat import uuid7

from bench.common import free_port
from domain.task import (
    AssignTask,
    CompleteTask,
    ReportTaskProgress,
    StartTask,
    SubmitTask,
    Task,
    TaskCommand,
    decide,
    evolve,
)
from eventstore.store import EventStore
from eventstore.streams import StreamLayout
from projections.migrate import migrate
from projections.read_models import projector_named
from projections.rebuild import RebuildReport, rebuild
from runtime.servers.base import ServerOptions
from runtime.servers.nats import NatsServer
from runtime.servers.postgres import PostgresServer
from runtime.structured_logging import configure_logging
from schemas.envelope import Actor, EventEnvelope
from schemas.events import event_data
from schemas.specs import TASK

EVENTS = int(os.environ.get("SUTAZAI_BENCH_EVENTS", "1000000"))
IN_FLIGHT = 512
ACTOR = Actor(id="bench", kind="system")
_REPOSITORY = Path(__file__).resolve().parents[1]


def _task_events(owner: UUID) -> list[EventEnvelope]:
    task_id, agent, command = uuid7(), uuid7(), f"bench-{uuid7()}"
    life: list[TaskCommand] = [
        SubmitTask(
            task_id=task_id, owner_id=owner, task_type="code.generate",
            payload={"prompt": "fizzbuzz"},
        ),
        AssignTask(task_id=task_id, agent_id=agent),
        StartTask(task_id=task_id),
        ReportTaskProgress(task_id=task_id, percent=50),
        CompleteTask(task_id=task_id, result={"code": "print(1)"}),
    ]  # fmt: skip
    # Decided by the domain, so the events are what the platform writes, whatever their shape.
    state: Task | None = None
    bodies: list[tuple[str, dict[str, JsonValue]]] = []
    for step in life:
        for event in decide(state, step):
            state = evolve(state, event)
            bodies.append((type(event).__name__, event_data(event)))
    now = datetime.now(UTC)
    return [
        EventEnvelope(
            event_id=uuid7(),
            event_type=event_type,
            schema_version=TASK.events[event_type],
            aggregate_type="task",
            aggregate_id=task_id,
            aggregate_version=version,
            occurred_at=now,
            actor=ACTOR,
            command_id=f"{command}-{version}",
            correlation_id=command,
            data=data,
        )
        for version, (event_type, data) in enumerate(bodies, start=1)
    ]


async def _write_log(store: EventStore) -> None:
    """The events, published as fast as JetStream takes them (the log is the input here)."""
    js = store.client.jetstream(timeout=30)
    owner = uuid7()
    gate = asyncio.Semaphore(IN_FLIGHT)
    written = 0
    started = time.monotonic()

    async def publish(envelope: EventEnvelope) -> None:
        async with gate:
            await js.publish(envelope.subject, envelope.model_dump_json().encode())

    while written < EVENTS:
        chunk = [e for _ in range(2_000) for e in _task_events(owner)]
        await asyncio.gather(*(publish(e) for e in chunk))
        written += len(chunk)
    rate = written / (time.monotonic() - started)
    print(f"# wrote {written:,} events ({rate:,.0f}/s)")


async def _bare_read(url: str, last: int) -> float:
    """Seconds bare nats-py takes to receive every body of the log, decoding nothing."""
    client = await nats.connect(url)
    inbox = client.new_inbox()
    received = 0
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def count(message: Msg) -> None:
        nonlocal received
        if message.headers and "Status" in message.headers:
            done.set_result(None)
        else:
            received += 1

    await client.subscribe(inbox, cb=count)
    started = time.monotonic()
    while received < last:
        done = asyncio.get_running_loop().create_future()
        request = {"seq": received + 1, "next_by_subj": ">", "batch": 10_000, "no_hdr": True}
        await client.publish(
            "$JS.API.DIRECT.GET.SUTAZAI_EVENTS", json.dumps(request).encode(), reply=inbox
        )
        await done
    seconds = time.monotonic() - started
    await client.close()
    return seconds


async def _rebuild_here(nats_url: str, postgres_url: str) -> None:
    """The child's part: rebuild `tasks`, then print the report and peak RSS as JSON."""
    configure_logging(level="warning")
    store = await EventStore.connect(nats_url, timeout=30)
    pool = await asyncpg.create_pool(postgres_url, min_size=2, max_size=4)
    report = await rebuild(store, pool, projector_named("tasks"))
    await pool.close()
    await store.client.close()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({**report.__dict__, "peak_rss_mib": peak_kib / 1024}))


async def _rebuild_in_child(nats_url: str, postgres_url: str) -> tuple[RebuildReport, float]:
    """The rebuild's report and its process's peak RSS in MiB."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.rebuild",
        "--rebuild",
        nats_url,
        postgres_url,
        stdout=asyncio.subprocess.PIPE,
        cwd=_REPOSITORY,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the rebuild's process exited with {child.returncode}")
    found = json.loads(out.decode().strip().splitlines()[-1])
    peak = float(found.pop("peak_rss_mib"))
    return RebuildReport(**found), peak


async def main() -> None:
    configure_logging(level="warning")
    root = Path(tempfile.mkdtemp(prefix="sutazai-bench-"))
    os.chmod(root, 0o755)
    options = ServerOptions(root=root, startup_timeout=30, stop_timeout=10)
    nats_server = NatsServer(options, port=free_port(), monitor_port=free_port())
    postgres = PostgresServer(options, port=free_port(), database="bench")
    await asyncio.gather(nats_server.start(), postgres.start())
    try:
        store = await EventStore.connect(nats_server.url, timeout=30)
        await store.setup(StreamLayout())
        pool = await asyncpg.create_pool(postgres.url, min_size=2, max_size=4)
        await migrate(pool)
        await _write_log(store)

        report, peak_mib = await _rebuild_in_child(nats_server.url, postgres.url)
        rows = await pool.fetch("SELECT * FROM tasks")
        columns = list(rows[0].keys())
        records = [tuple(row) for row in rows]
        await pool.execute("CREATE TABLE tasks_copy (LIKE tasks INCLUDING ALL)")
        started = time.monotonic()
        await pool.copy_records_to_table("tasks_copy", records=records, columns=columns)
        copy_seconds = time.monotonic() - started

        print(f"{'name':<34} {'ours':>10} {'baseline':>10}  ratio")
        print(
            f"{'rebuild tasks (seconds)':<34} {report.seconds:>10.2f} {copy_seconds:>10.2f}"
            f"  {copy_seconds / report.seconds:>5.3f}x  ({report.events:,} events -> "
            f"{len(rows):,} rows; {report.events / report.seconds:,.0f} events/s; "
            f"COPY {len(rows) / copy_seconds:,.0f} rows/s; rebuild peak RSS {peak_mib:,.0f} MiB)"
        )
        read_seconds = await _bare_read(nats_server.url, report.sequence)
        print(
            f"{'rebuild tasks vs bare log read':<34} {report.seconds:>10.2f} {read_seconds:>10.2f}"
            f"  {read_seconds / report.seconds:>5.3f}x  ({report.sequence / read_seconds:,.0f}"
            f" events/s read by nats-py, nothing decoded; rebuild peak RSS {peak_mib:,.0f} MiB)"
        )
        print(f"{'rebuild peak RSS (MB)':<34} {peak_mib * 1.048576:>10.0f}  goal <= 250")
        await pool.close()
        await store.client.close()
    finally:
        await asyncio.gather(nats_server.stop(), postgres.stop())
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rebuild"]:
        asyncio.run(_rebuild_here(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(main())
