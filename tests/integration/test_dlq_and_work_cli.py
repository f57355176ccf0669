"""`sutazai dlq list|replay`, `sutazai ingest` and `sutazai ask` as a person runs them, on the
session's real servers (and the real model server for ingest and ask)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest
from uuid_utils.compat import uuid4

from commands.dispatch import CommandDispatcher
from eventstore.dlq import ParkedEvent, park, parked_events
from eventstore.store import EventStore
from handlers.consumers import Delivered, Delivery
from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import connect, run_projections
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.commands import CommandAccepted, CommandRequest
from schemas.envelope import Actor, EventEnvelope, RecordedEvent
from tests.consuming import consuming
from tests.passwords import cheap_hasher
from tests.servers import (
    SUTAZAI,
    cli_environment,
    finished,
    isolated_settings,
    run_sutazai,
    scratch_dir,
)


async def sutazai(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run the `sutazai` command without blocking the loop (the agents under test live on it)."""
    return await finished([SUTAZAI, *args], env, timeout=timeout)


async def _parked_of(store: EventStore, consumer: str) -> list[ParkedEvent]:
    return [parked async for parked in parked_events(store, consumer)]


async def _until_parked(store: EventStore, consumer: str, timeout: float = 60) -> ParkedEvent:
    deadline = time.monotonic() + timeout
    while not (found := await _parked_of(store, consumer)):
        assert time.monotonic() < deadline, f"{consumer} never parked the event"
        await asyncio.sleep(0.1)
    (parked,) = found
    return parked


async def test_a_parked_event_is_listed_then_replayed_through_its_agent_and_leaves_the_dlq(
    stack: Stack, event_store: EventStore, dispatcher: CommandDispatcher
) -> None:
    consumer = f"replay-test-{uuid4().hex[:8]}"
    owner = uuid4()
    broken = True
    handled: list[UUID] = []

    async def flaky(delivered: Delivered) -> None:
        """Fails on this test's tasks while `broken`, like a handler with a bug later fixed."""
        event = delivered.envelope
        if event.data.get("owner_id") != str(owner):
            return
        if broken:
            raise RuntimeError("the handler is broken for now")
        handled.append(event.event_id)

    env = cli_environment(stack.settings)
    async with consuming(
        event_store,
        stack.nats_url,
        consumer=consumer,
        subject="sutazai.events.task.*.TaskSubmitted",
        handle=flaky,
        delivery=Delivery(attempts=2, first_delay=0.1, ack_wait=30.0),
    ):
        reply = await dispatcher.dispatch(
            "SubmitTask",
            CommandRequest(
                actor=Actor(id="replay-test", kind="system"),
                payload={"owner_id": str(owner), "task_type": "test.replay"},
            ),
        )
        assert isinstance(reply, CommandAccepted), reply
        parked = await _until_parked(event_store, consumer)
        assert parked.stream_sequence == reply.sequence
        assert parked.event_type == "TaskSubmitted"
        assert "the handler is broken for now" in parked.error

        code, out, err = await sutazai(env, "dlq", "list", "--consumer", consumer)
        assert code == 0, out + err
        for shown in (consumer, str(reply.sequence), "TaskSubmitted", "RuntimeError"):
            assert shown in out, out
        assert str(reply.aggregate_id) in out

        # Still broken: the replay fails, says why, and the entry stays parked.
        code, out, err = await sutazai(env, "dlq", "replay", "--consumer", consumer)
        assert code == 1, out + err
        assert "failed again" in err, err
        assert "broken for now" in err
        assert len(await _parked_of(event_store, consumer)) == 1
        assert handled == []

        broken = False  # the fix is deployed
        log_before = await event_store.last_sequence()
        code, out, err = await sutazai(
            env, "dlq", "replay", "--consumer", consumer, "--sequence", str(reply.sequence)
        )
        assert code == 0, out + err
        assert "replayed" in out
        assert "1 of 1" in out
        assert handled == [parked.envelope.event_id]
        assert await _parked_of(event_store, consumer) == []
        # The log was not written to re-deliver the event: it is there once, as it was.
        assert await event_store.last_sequence() == log_before
        history = [r async for r in event_store.aggregate_events("task", reply.aggregate_id)]
        assert [r.envelope.event_type for r in history] == ["TaskSubmitted"]

        code, out, _ = await sutazai(env, "dlq", "list", "--consumer", consumer)
        assert code == 0
        assert "empty" in out
        code, out, _ = await sutazai(env, "dlq", "replay", "--consumer", consumer)
        assert code == 0
        assert "nothing to replay" in out


async def test_replaying_for_a_consumer_no_agent_runs_says_to_start_it(
    stack: Stack, event_store: EventStore
) -> None:
    consumer = f"nobody-{uuid4().hex[:8]}"
    envelope = EventEnvelope.model_validate(
        {
            "event_id": str(uuid4()),
            "event_type": "TaskCancelled",
            "schema_version": 1,
            "aggregate_type": "task",
            "aggregate_id": str(uuid4()),
            "aggregate_version": 2,
            "occurred_at": "2026-01-01T00:00:00Z",
            "actor": {"id": "test", "kind": "system"},
            "command_id": "c1",
            "correlation_id": "c1",
            "causation_id": "c1",
            "data": {},
        }
    )
    await park(event_store, consumer, RecordedEvent(sequence=7, envelope=envelope), KeyError("x"))
    env = cli_environment(stack.settings)
    code, out, err = await sutazai(env, "dlq", "replay", "--consumer", consumer)
    assert code == 1, out + err
    assert "no running agent consumes" in err, err
    assert "Traceback" not in err
    assert len(await _parked_of(event_store, consumer)) == 1


DOCUMENTS = {
    "volcanoes.md": (
        "# Volcanoes\n\nVolcanoes form where magma from the mantle reaches the surface. Mount "
        "Etna in Sicily is one of the most active volcanoes in Europe, erupting several times "
        "a decade.\n"
    ),
    "sourdough.txt": (
        "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria. Feed the "
        "starter with flour and water every day and bake when it doubles in size.\n"
    ),
}


@pytest.fixture
async def running_agents(settings: Settings, stack: Stack) -> AsyncIterator[None]:
    """The coordinator and the document assistant, with projections, as `sutazai up` runs them."""
    quick = settings.model_copy(update={"heartbeat_seconds": 0.5, "coordinator_sweep_seconds": 0.5})
    passwords = cheap_hasher()
    only = ("task-coordinator", "document-assistant")
    async with (
        connect(quick, stack, passwords=passwords) as platform,
        run_projections(quick, platform.store, platform.postgres),
        run_agents(platform, AgentOptions(only=only, replica=f"w{uuid4().hex[:6]}")),
    ):
        yield


@pytest.mark.phase_timeout(900)
@pytest.mark.usefixtures("running_agents")
async def test_ingest_adds_text_files_skips_binaries_and_ask_answers_citing_them(
    stack: Stack,
) -> None:
    folder = scratch_dir("sutazai-ingest-")
    try:
        for name, text in DOCUMENTS.items():
            (folder / name).write_text(text)
        (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
        owner = str(uuid4())
        env = cli_environment(stack.settings)

        code, out, err = await sutazai(
            env, "ingest", str(folder), "--owner", owner, "--wait", timeout=300
        )
        assert code == 0, out + err
        assert "skipped" in out, out
        assert "photo.png: binary" in out.replace("\n", "")
        assert out.count("indexed") >= 2, out
        assert "2 document(s) added" in out

        again = await sutazai(env, "ingest", str(folder / "volcanoes.md"), "--owner", owner)
        assert again[0] == 0, again
        assert "already added" in again[1]

        code, out, err = await sutazai(
            env,
            "ask",
            "Which volcano in Sicily is active?",
            "--owner",
            owner,
            "--timeout",
            "400",
            timeout=450,
        )
        assert code == 0, out + err
        assert "Answer" in out
        assert "Citations" in out
        assert "volcanoes.md" in out  # cited by its title, with its chunk index
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_dlq_ask_and_ingest_say_plainly_when_the_platform_is_not_up() -> None:
    root = scratch_dir()
    env = cli_environment(isolated_settings(root))  # ports nothing listens on
    env["SUTAZAI_STORE_TIMEOUT"] = "1"
    note = root / "note.md"
    note.write_text("# A note\n\nSome text.\n")
    try:
        for command in (
            ["dlq", "list"],
            ["dlq", "replay"],
            ["ask", "what is in my notes?"],
            ["ingest", str(note)],
        ):
            started = time.monotonic()
            code, out, err = await sutazai(env, *command, timeout=60)
            assert code == 2, (command, out, err)
            assert "does not answer" in err, (command, err)
            assert "Traceback" not in err
            assert time.monotonic() - started < 15
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_ingest_without_a_readable_file_says_so(tmp_path: Path) -> None:
    result = run_sutazai({**os.environ, "COLUMNS": "200"}, "ingest", str(tmp_path / "missing.md"))
    assert result.returncode == 1  # a user error
    assert "no such file" in result.stderr
    assert "No file to ingest" in result.stderr
