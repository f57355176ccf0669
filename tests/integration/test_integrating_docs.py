"""Every code example of docs/integrating.md, run as it is written against the session's real
NATS: the Python ones with this interpreter, the JavaScript ones with `node` and the npm `nats`
client installed under tests/clients/ (`npm ci --prefix tests/clients`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
from uuid_utils.compat import uuid4

from commands.bus import CommandBus
from eventstore.store import EventStore
from eventstore.streams import EVENTS_STREAM
from handlers.consumers import Delivery
from handlers.integrations.webhook import Webhooks, sign
from runtime.stack import Stack
from tests.servers import finished, free_port
from tests.tasks import completed_task, task_event

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrating.md"
CLIENTS = ROOT / "tests" / "clients"
EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)^```", re.M | re.S
)
FENCE = re.compile(r"^```(\w*)$", re.M)
RUN = {
    "nats-py-durable": "python",
    "nats-py-resume": "python",
    "faststream": "python",
    "javascript": "js",
    "json-schema": "python",
    "webhook-receiver": "python",
    "javascript-verify": "js",
}
"""Each example of the page, by its marker, and the language it is in; each has a test here."""


def examples() -> dict[str, tuple[str, str]]:
    text = DOC.read_text()
    return {m["name"]: (m["lang"], m["code"]) for m in EXAMPLE.finditer(text)}


def example(name: str) -> str:
    return examples()[name][1]


def test_every_python_and_javascript_block_of_the_page_is_an_example_run_here() -> None:
    text = DOC.read_text()
    languages = FENCE.findall(text)[::2]  # opening fences: every other match
    code = [lang for lang in languages if lang in ("python", "js")]
    found = examples()
    assert len(code) == len(found), "a python/js block without an <!-- example: name --> marker"
    assert {name: lang for name, (lang, _) in found.items()} == RUN


async def run(
    command: list[str], env: dict[str, str], *, cwd: Path = ROOT, timeout: float = 60
) -> str:
    """Run an example to its end; its output (it must exit 0)."""
    code, out, err = await finished(command, {**os.environ, **env}, cwd=cwd, timeout=timeout)
    assert code == 0, f"exit {code}\n{out}\n{err}"
    return out


async def python(name: str, env: dict[str, str], tmp_path: Path) -> str:
    script = tmp_path / f"example_{name.replace('-', '_')}.py"  # not a module's name
    script.write_text(example(name))
    return await run([sys.executable, str(script)], env)


async def node(code: str, env: dict[str, str]) -> str:
    """An ES module run by node from tests/clients/, where `import "nats"` resolves."""
    if shutil.which("node") is None or not (CLIENTS / "node_modules" / "nats").is_dir():
        pytest.fail("node and `npm ci --prefix tests/clients` are needed for the JS examples")
    return await run(["node", "--input-type=module", "-e", code], env, cwd=CLIENTS)


async def completed(store: EventStore, count: int) -> list[tuple[int, str]]:
    """`count` tasks completed through the bus (each with other events of its own on the way);
    the sequence and event id of each TaskCompleted."""
    bus = CommandBus(store)
    published = []
    for index in range(count):
        event = await completed_task(bus, {"n": index})
        published.append((event.sequence, str(event.envelope.event_id)))
    return published


def lines(output: str) -> list[tuple[int, str, str]]:
    """`<sequence> <event_type> <event_id>` lines."""
    rows = []
    for line in output.splitlines():
        sequence, event_type, event_id = line.split()
        rows.append((int(sequence), event_type, event_id))
    return rows


async def assert_in_log(store: EventStore, rows: list[tuple[int, str, str]]) -> None:
    """Each row is a TaskCompleted the log holds at that sequence."""
    js = store.client.jetstream(timeout=store.timeout)
    for sequence, event_type, event_id in rows:
        assert event_type == "TaskCompleted"
        stored = await js.get_msg(EVENTS_STREAM, sequence)
        assert stored.subject is not None
        assert stored.subject.endswith(".TaskCompleted")
        assert json.loads(stored.data or b"")["event_id"] == event_id


async def test_the_durable_nats_py_consumer_reads_in_order_then_resumes_where_it_stopped(
    stack: Stack, event_store: EventStore, tmp_path: Path
) -> None:
    await completed(event_store, 3)
    env = {"NATS_URL": stack.nats_url}
    first = lines(await python("nats-py-durable", {**env, "COUNT": "2"}, tmp_path))
    second = lines(await python("nats-py-durable", {**env, "COUNT": "1"}, tmp_path))
    assert len(first) == 2
    assert len(second) == 1
    rows = first + second
    sequences = [sequence for sequence, _, _ in rows]
    assert sequences == sorted(set(sequences)), "stream order, nothing twice"
    await assert_in_log(event_store, rows)


async def test_resuming_from_a_sequence_reads_exactly_what_follows(
    stack: Stack, event_store: EventStore, tmp_path: Path
) -> None:
    published = await completed(event_store, 3)
    env = {"NATS_URL": stack.nats_url, "COUNT": "3", "START_SEQ": str(published[0][0])}
    rows = lines(await python("nats-py-resume", env, tmp_path))
    assert [(sequence, event_id) for sequence, _, event_id in rows] == published
    assert {event_type for _, event_type, _ in rows} == {"TaskCompleted"}


async def test_the_faststream_subscriber_reads_and_acknowledges(
    stack: Stack, event_store: EventStore, tmp_path: Path
) -> None:
    await completed(event_store, 3)  # two for the first run, one for the second
    env = {"NATS_URL": stack.nats_url, "COUNT": "2"}
    rows = lines(await python("faststream", env, tmp_path))
    assert len(rows) == 2
    assert rows[0][0] < rows[1][0]
    await assert_in_log(event_store, rows)
    again = lines(await python("faststream", {**env, "COUNT": "1"}, tmp_path))
    assert again[0][0] > rows[1][0], "the durable consumer resumes after what it acknowledged"


async def test_the_javascript_consumer_reads_in_order_then_resumes(
    stack: Stack, event_store: EventStore
) -> None:
    await completed(event_store, 3)
    code = example("javascript")
    first = lines(await node(code, {"NATS_URL": stack.nats_url, "COUNT": "2"}))
    second = lines(await node(code, {"NATS_URL": stack.nats_url, "COUNT": "1"}))
    assert len(first) == 2
    assert len(second) == 1
    sequences = [sequence for sequence, _, _ in first + second]
    assert sequences == sorted(set(sequences))
    await assert_in_log(event_store, first + second)


async def test_the_last_finished_task_validates_against_its_published_json_schema(
    stack: Stack, event_store: EventStore, tmp_path: Path
) -> None:
    _, event_id = (await completed(event_store, 1))[0]
    output = await python("json-schema", {"NATS_URL": stack.nats_url}, tmp_path)
    assert output.splitlines() == [
        f"valid TaskCompleted.v2.json {event_id}",
        "channel sutazai.events.task.{aggregate_id}.TaskCompleted",
    ]


async def _listening(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert time.monotonic() < deadline, "the receiver never listened"
            await asyncio.sleep(0.05)


async def test_the_receiver_accepts_a_real_webhook_and_refuses_a_forged_one(
    tmp_path: Path,
) -> None:
    secret = "docs-webhook-secret"
    port = free_port()
    script = tmp_path / "receiver.py"
    script.write_text(example("webhook-receiver"))
    # Three connections: the probe that it listens, a forged request, the real one.
    env = {"SUTAZAI_WEBHOOK_SECRET": secret, "PORT": str(port), "COUNT": "3"}
    receiving = asyncio.create_task(run([sys.executable, str(script)], env, timeout=30))
    await _listening(port)
    url = f"http://127.0.0.1:{port}/hook"
    envelope = task_event("TaskCompleted", {"result": {}}, actor_id="docs-test")
    body = envelope.model_dump_json().encode()
    stamp = str(int(time.time()))
    async with httpx.AsyncClient() as client:
        forged = await client.post(
            url,
            content=body,
            headers={
                "X-Sutazai-Timestamp": stamp,
                "X-Sutazai-Signature": sign(b"not the secret", int(stamp), body),
            },
        )
    assert forged.status_code == 401
    hooks = Webhooks([url], secret.encode(), timeout=5, delivery=Delivery())
    await hooks.post(url, envelope)  # raises unless 2xx
    output = await receiving
    assert output.splitlines() == ["refused", f"accepted TaskCompleted {envelope.event_id}"]


async def test_the_node_signature_check_agrees_with_the_sender() -> None:
    secret = "docs-webhook-secret"
    body = json.dumps({"event_id": str(uuid4()), "data": {"result": {"é": 1}}}).encode()
    now = int(time.time())
    signature = sign(secret.encode(), now, body)
    check = (
        example("javascript-verify")
        + """
const { SECRET, BODY, NOW, SIGNATURE, OLD, OLD_SIGNATURE } = process.env;
const body = Buffer.from(BODY, "utf8");
console.log(verifySutazai(SECRET, NOW, body, SIGNATURE));
console.log(verifySutazai("wrong", NOW, body, SIGNATURE));
console.log(verifySutazai(SECRET, NOW, Buffer.concat([body, Buffer.from(" ")]), SIGNATURE));
console.log(verifySutazai(SECRET, OLD, body, OLD_SIGNATURE));
console.log(verifySutazai(SECRET, NOW, body, undefined));
"""
    )
    old = now - 3600  # signed right, but an hour ago: a replayed request
    env = {
        "SECRET": secret,
        "BODY": body.decode(),
        "NOW": str(now),
        "SIGNATURE": signature,
        "OLD": str(old),
        "OLD_SIGNATURE": sign(secret.encode(), old, body),
    }
    output = await node(check, env)
    assert output.split() == ["true", "false", "false", "false", "false"]
