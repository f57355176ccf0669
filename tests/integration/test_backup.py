"""`sutazai backup` and `sutazai restore` as a user runs them, between two platforms of their own:
the restored stack has the same log, sequence for sequence, and the same read models; a damaged
backup is refused and leaves the target untouched."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandContext
from domain.agent import AgentKind
from domain.task import AssignTask, CompleteTask, StartTask, SubmitTask
from eventstore.backup import MANIFEST, read_stream, target_contents
from eventstore.blobs import BlobStore
from eventstore.streams import EVENTS_STREAM
from handlers.presence import register
from projections.rebuild import _checksums
from projections.runtime import ProjectionRunner
from runtime.bootstrap import PROJECTORS, Platform
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.chaos.platforms import cli_environment, own_platform
from tests.servers import SUTAZAI, free_port, scratch_dir

pytestmark = pytest.mark.phase_timeout(240)

TASKS = 40


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float


async def _sutazai(platform: Platform, *args: str) -> Ran:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        SUTAZAI,
        *args,
        env={**cli_environment(platform), "COLUMNS": "80"},
        stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode(), time.monotonic() - started)


def _said(text: str) -> list[str]:
    """What a person reads on stderr: the JSON log lines left out."""
    lines = []
    for line in text.splitlines():
        try:
            if isinstance(json.loads(line), dict):
                continue
        except ValueError:
            pass
        if line.strip():
            lines.append(line)
    return lines


async def _fill(platform: Platform) -> None:
    bus = platform.commands.bus
    agent = await register(
        bus,
        name=f"backup-worker-{uuid4().hex[:6]}",
        kind=AgentKind.CUSTOM,
        capabilities=["test.backup"],
        model="none",
    )
    owner = uuid7()
    for number in range(TASKS):
        context = CommandContext(command_id=str(uuid7()), actor=Actor(id="t", kind="system"))
        task = SubmitTask(
            task_id=uuid7(), owner_id=owner, task_type="test.backup", payload={"n": number}
        )
        await bus.execute(task, context)
        if number % 3:
            continue
        worker = Actor(id=agent.agent_id, kind="agent")
        for command in (
            AssignTask(task_id=task.task_id, agent_id=UUID(agent.agent_id)),
            StartTask(task_id=task.task_id),
            CompleteTask(task_id=task.task_id, result={"n": number}),
        ):
            await bus.execute(command, CommandContext(command_id=str(uuid7()), actor=worker))
    blobs = BlobStore(platform.store)
    for number in range(3):
        await blobs.put(f"blob {number} ".encode() * 1000)


async def _project(platform: Platform) -> None:
    last = await platform.store.last_sequence()
    for projector in PROJECTORS:
        runner = ProjectionRunner(platform.store, platform.postgres, projector)
        while await runner.apply_once(up_to=last):
            pass


async def _read_models(platform: Platform) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    async with platform.postgres.acquire() as connection:
        for projector in PROJECTORS:
            tables = {f"{projector.name}.{t}": t for t in projector.tables}
            found.update(await _checksums(connection, tables))
    return found


async def _log(platform: Platform) -> list[tuple[int, str, str | None, bytes]]:
    store = platform.store
    last = await store.last_sequence()
    return [
        (record.sequence, record.subject, record.headers.get("Nats-Msg-Id"), record.data)
        async for batch in read_stream(
            store.client, EVENTS_STREAM, up_to=last, timeout=store.timeout, watch=store.watch
        )
        for record in batch
    ]


def _damaged(backup: Path, how: str) -> Path:
    copy = scratch_dir("sutazai-backup-damaged-") / "backup"
    shutil.copytree(backup, copy)
    events = copy / f"{EVENTS_STREAM}.records"
    content = bytearray(events.read_bytes())
    if how == "flipped":
        content[len(content) // 2] ^= 0x01
    else:
        content = content[: len(content) - 7]
    events.write_bytes(bytes(content))
    return copy


async def test_a_backup_restores_into_an_empty_stack_with_the_same_log_and_read_models(
    stack: Stack,
) -> None:
    where = scratch_dir("sutazai-backup-") / "backup"
    async with (
        own_platform(stack, "backup_source", nats_port=free_port()) as source,
        own_platform(stack, "backup_target", nats_port=free_port()) as target,
    ):
        await _fill(source)
        await _project(source)

        backed = await _sutazai(source, "backup", str(where))
        assert backed.code == 0, backed
        manifest = json.loads((where / MANIFEST).read_text())
        events = next(f for f in manifest["files"] if f["source"] == EVENTS_STREAM)
        last = await source.store.last_sequence()
        assert (events["first_sequence"], events["last_sequence"], events["records"]) == (
            1,
            last,
            last,
        )
        assert f"Backed up {last:,} events" in backed.stdout

        # A damaged backup: refused in one line, before anything is written.
        for how, says in (("flipped", "SHA-256"), ("truncated", "truncated")):
            refused = await _sutazai(target, "restore", str(_damaged(where, how)))
            assert refused.code == 1, refused
            said = _said(refused.stderr)
            assert len(said) == 1, refused
            assert says in said[0], refused
            assert "Traceback" not in refused.stderr
            assert await target.store.last_sequence() == 0

        restored = await _sutazai(target, "restore", str(where))
        assert restored.code == 0, restored
        assert f"Restored {last:,} events" in restored.stdout
        assert await _log(target) == await _log(source)
        models = await _read_models(source)
        assert await _read_models(target) == models
        assert models["tasks.tasks"][0] == TASKS, models
        store = source.store
        held = await target_contents(store.client, store.timeout)
        assert held == await target_contents(target.store.client, store.timeout)
        assert held["sutazai_blobs"] == 3
        assert held["sutazai_unique"] >= 1

        # The target now holds a log: a second restore would need other sequences.
        again = await _sutazai(target, "restore", str(where))
        assert again.code == 1, again
        assert "empty stack" in _said(again.stderr)[0]
        print(
            f"backup: {last} events, {manifest_size(where)} bytes, {backed.seconds:.1f}s; "
            f"restore and rebuild: {restored.seconds:.1f}s"
        )


def manifest_size(backup: Path) -> int:
    return sum(path.stat().st_size for path in backup.iterdir())
