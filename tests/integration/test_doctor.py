"""`sutazai doctor` as a person runs it, on a stack of its own (the session's stack is shared: its
DLQ holds what other tests parked): healthy, then with a server stopped and an event parked."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from uuid_utils.compat import uuid4

from eventstore.dlq import park, release
from eventstore.store import EventStore
from eventstore.streams import dlq_stream
from runtime.bootstrap import stream_layout
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import Actor, EventEnvelope, RecordedEvent
from tests.servers import SUTAZAI, cli_environment, isolated_settings, scratch_dir

CONSUMER = "doctor-test"


@dataclass
class OwnStack:
    settings: Settings
    stack: Stack
    store: EventStore
    env: dict[str, str]


@pytest.fixture(scope="module")
async def own_stack() -> AsyncIterator[OwnStack]:
    """The servers of `sutazai up`, with the streams and buckets the platform creates."""
    root = scratch_dir()
    settings = isolated_settings(root)
    stack = Stack(settings)
    try:
        await stack.start()
        store = await EventStore.connect(stack.nats_url, timeout=5.0, name="doctor-test")
        await store.setup(stream_layout(settings))
        env = {**cli_environment(settings), "COLUMNS": "80"}
        try:
            yield OwnStack(settings, stack, store, env)
        finally:
            await store.client.close()
    finally:
        await stack.stop()
        shutil.rmtree(root, ignore_errors=True)


async def doctor(env: dict[str, str]) -> tuple[int, str, str]:
    """`sutazai doctor` in an 80-column terminal: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        SUTAZAI,
        "doctor",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _assert_readable(out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert all(len(line) <= 80 for line in (out + err).splitlines()), out + err


async def test_doctor_says_healthy_and_exits_0(own_stack: OwnStack) -> None:
    code, out, err = await doctor(own_stack.env)
    report = f"exit {code}\n{out}\n{err}"
    _assert_readable(out, err)
    assert code == 0, report
    assert err == "", report
    for row in ("nats", "postgres", "redis", "graph", "model", "SUTAZAI_EVENTS", "SUTAZAI_DLQ"):
        assert f"│ {row} " in out, report
    for version in ("nats-server 2.", "PostgreSQL ", "FalkorDB ", "Redis ", "Ollama API "):
        assert version in out, report
    assert "✗" not in out, report
    assert "Healthy: every check passed." in out, report


async def test_doctor_names_a_stopped_server_and_a_parked_event(own_stack: OwnStack) -> None:
    envelope = EventEnvelope(
        event_id=uuid4(),
        event_type="TaskSubmitted",
        schema_version=1,
        aggregate_type="task",
        aggregate_id=uuid4(),
        aggregate_version=1,
        occurred_at=datetime.now(UTC),
        actor=Actor(id="doctor-test", kind="system"),
        command_id="doctor-test",
        correlation_id="doctor-test",
        data={},
    )
    event = RecordedEvent(sequence=1, envelope=envelope)
    parked = await park(own_stack.store, CONSUMER, event, ValueError("a test's poison"))
    redis = own_stack.stack.embedded("redis")
    await redis.stop()
    try:
        code, out, err = await doctor(own_stack.env)
    finally:
        await redis.start()
        await release(own_stack.store, parked)  # the other test finds the stack healthy
    report = f"exit {code}\n{out}\n{err}"
    _assert_readable(out, err)
    assert code == 1, report
    problems = " ".join(" ".join(out.split("✗")[1:]).split())  # the lines as one, unwrapped
    assert "redis does not answer" in problems, report
    assert "restart `sutazai up`" in problems, report
    assert f"1 event(s) parked on the DLQ ({CONSUMER} 1)" in problems, report
    assert "`sutazai dlq list`" in problems, report
    assert len(out.split("✗")) == 3, report  # those two, nothing else
    assert err.strip() == "2 problem(s) found: each is said above with what to do.", report


async def test_doctor_names_a_limit_on_a_stream(own_stack: OwnStack) -> None:
    js = own_stack.store.client.jetstream()
    wanted = dlq_stream(stream_layout(own_stack.settings))
    limited = dataclasses.replace(wanted, max_msgs=1_000)
    await js.update_stream(limited)
    try:
        code, out, err = await doctor(own_stack.env)
    finally:
        await js.update_stream(dataclasses.replace(wanted, max_msgs=-1))
    report = f"exit {code}\n{out}\n{err}"
    _assert_readable(out, err)
    assert code == 1, report
    problems = " ".join(" ".join(out.split("✗")[1:]).split())
    assert "SUTAZAI_DLQ has max_msgs 1000, expected -1 — remove that limit" in problems, report
    assert err.strip() == "1 problem(s) found: each is said above with what to do.", report
