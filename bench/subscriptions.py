"""Subscriptions at scale: many websocket subscribers on one gateway, following the task stream.

Starts its own NATS, PostgreSQL, Redis and graph servers (a `Stack` on free loopback ports, data
in a temp dir) and the gateway in this process, as `sutazai up` serves it (rate limits on, too
high to refuse). A separate process opens SUTAZAI_BENCH_SUBSCRIBERS websockets (default 1,000),
each speaking graphql-transport-ws with the `websockets` library and subscribing to `tasks`:

- SUTAZAI_BENCH_FOLLOW=own (default): each socket is a user of its own, who follows their own
  tasks (`tasks` filters by owner): every event reaches one subscriber;
- SUTAZAI_BENCH_FOLLOW=all: each socket is an admin following every task: every event reaches
  every subscriber.

Like browsers, the sockets offer permessage-deflate (SUTAZAI_BENCH_DEFLATE=0: they do not). With
SUTAZAI_BENCH_TRACEMALLOC=1 the largest allocations made while they subscribe are printed too.

Once all are live (the gateway's `sutazai_graphql_subscriptions_live` gauge) and idle for two
seconds, the gateway process's RSS is read again: the growth divided by the subscribers is the
memory per idle subscriber. Then a third process submits tasks at SUTAZAI_BENCH_RATE a second
(default 100) for SUTAZAI_BENCH_SECONDS (default 10), owned round robin by the users (own) or by
the admin (all):

- SUTAZAI_BENCH_SOURCE=log (default): `SubmitTask` through a command bus of the process's own,
  appended straight to the log (what the agents and other gateways do): the push latency is the
  subscription path alone;
- SUTAZAI_BENCH_SOURCE=graphql: the `submitTask` mutation through the same gateway (its own
  latency, printed as `submit p50/p99`, then counts in the push latency too).

Each task's payload carries the wall-clock time its submission was sent; each subscriber notes,
for each push, the time from there to its arrival.

Prints `# ...` comment lines, then `name  value  (unit)` lines, then one summary line per goal:
`<name>   <value>   goal <= <bound>`, columns separated by at least two spaces (what a report
script reads). The goals: p99 push <= 100 ms at 100 events/s, <= 50 KB per idle subscriber.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
import websockets
from uuid_utils.compat import uuid7

from bench.common import bench_stack, free_port
from bench.graphql import bench_settings, serving_platform, sign_in
from commands.bus import CommandBus, CommandContext
from domain.task import SubmitTask
from eventstore.store import EventStore
from gateway.auth import Principal, Tokens
from runtime.bootstrap import Platform
from runtime.gateway_wiring import jwt_secret, serve_gateway
from runtime.structured_logging import configure_logging
from schemas.envelope import Actor

SUBSCRIBERS = int(os.environ.get("SUTAZAI_BENCH_SUBSCRIBERS", "1000"))
RATE = float(os.environ.get("SUTAZAI_BENCH_RATE", "100"))
SECONDS = float(os.environ.get("SUTAZAI_BENCH_SECONDS", "10"))
FOLLOW = os.environ.get("SUTAZAI_BENCH_FOLLOW", "own")
SOURCE = os.environ.get("SUTAZAI_BENCH_SOURCE", "log")
TRACE = os.environ.get("SUTAZAI_BENCH_TRACEMALLOC") == "1"
DEFLATE = os.environ.get("SUTAZAI_BENCH_DEFLATE", "1") == "1"
SERVERS = ("nats", "postgres", "redis", "graph")
OPENING = 50
"""Websockets opened at once by the subscriber process."""
SETTLE = 20.0
"""Seconds to wait after the last submission for the pushes still on their way."""
GOAL_P99_MS = 100.0
GOAL_KB = 50.0

SUBSCRIPTION = "subscription { tasks { sequence aggregateId data } }"
SUBMIT = (
    'mutation ($p: JSON) { submitTask(input: {taskType: "code.generate", payload: $p})'
    " { aggregateId } }"
)


@dataclass
class Received:
    """What the subscriber process saw."""

    latencies: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    """When each push's event was submitted (wall clock), in the order of `latencies`."""
    errors: list[str] = field(default_factory=list)
    closed: int = 0


def rss_kb(pid: int | None = None) -> int:
    """A process's resident set size in KB (this process's by default)."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1])


# --- the subscriber process ---------------------------------------------------------------


def _subscribers(conn: Connection, url: str, tokens: list[str]) -> None:
    """In its own process: one websocket per token; report when told to stop."""
    asyncio.run(_subscribers_async(conn, url, tokens))


async def _subscribe(
    url: str, token: str, received: Received, opened: asyncio.Semaphore
) -> websockets.ClientConnection:
    async with opened:
        socket = await websockets.connect(
            url,
            subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
            max_queue=None,
            compression="deflate" if DEFLATE else None,
        )
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await socket.send(orjson.dumps(init).decode())
        ack = orjson.loads(await socket.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}
        await socket.send(orjson.dumps(subscribe).decode())
    return socket


async def _listen(socket: websockets.ClientConnection, received: Received) -> None:
    try:
        async for frame in socket:
            message = orjson.loads(frame)
            kind = message.get("type")
            if kind == "next":
                data = message["payload"].get("data") or {}
                sent = (data.get("tasks") or {}).get("data", {}).get("payload", {}).get("sent")
                if sent is None:
                    received.errors.append(f"unexpected push: {message}"[:300])
                else:
                    received.latencies.append(time.time() - float(sent))
                    received.sent.append(float(sent))
            elif kind == "ping":
                await socket.send('{"type":"pong"}')
            elif kind in ("error", "complete"):
                received.errors.append(f"{kind}: {message}"[:300])
    except websockets.ConnectionClosed:
        received.closed += 1


async def _subscribers_async(conn: Connection, url: str, tokens: list[str]) -> None:
    received = Received()
    opened = asyncio.Semaphore(OPENING)
    sockets = await asyncio.gather(*(_subscribe(url, t, received, opened) for t in tokens))
    listeners = [asyncio.create_task(_listen(s, received)) for s in sockets]
    # The client's own collections must not be charged to the gateway: what exists now is
    # never collected, and the pauses that remain are reported.
    gc.collect()
    gc.freeze()
    pauses = _GcPauses()
    gc.callbacks.append(pauses)
    conn.send("subscribed")
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, conn.recv) == "count":
        conn.send(len(received.latencies))
    conn.send(
        (
            received.latencies,
            received.sent,
            received.errors[:5],
            len(received.errors),
            received.closed,
            max(pauses.seconds, default=0.0),
        )
    )
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    for listener in listeners:
        listener.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)


# --- the submitting process ---------------------------------------------------------------


Submitted = tuple[int, list[float], list[str]]
"""Tasks accepted, each submission's response time, some failures."""


def _submitter(
    conn: Connection, source: str, target: str, owners: list[tuple[str, str]], timeout: float
) -> None:
    """In its own process: submit tasks at RATE a second for SECONDS, owned round robin by
    `owners` (user id, access token), through the gateway at `target` (graphql) or straight
    to the log through the NATS at `target`; sends back `Submitted`."""
    configure_logging(level="warning")
    conn.send(asyncio.run(_submit_async(source, target, owners, timeout)))


async def _paced(submit: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """`submit(index)` RATE times a second for SECONDS, on schedule however long each takes."""
    started = time.perf_counter()
    pending: list[asyncio.Task[None]] = []
    for index in range(int(RATE * SECONDS)):
        delay = started + index / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(submit(index)))
    await asyncio.gather(*pending)


async def _submit_async(
    source: str, target: str, owners: list[tuple[str, str]], timeout: float
) -> Submitted:
    took: list[float] = []
    failures: list[str] = []
    if source == "graphql":
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def by_mutation(index: int) -> None:
                token = owners[index % len(owners)][1]
                sent = time.time()
                response = await client.post(
                    target,
                    json={"query": SUBMIT, "variables": {"p": {"sent": sent, "n": index}}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                body = response.json()
                if response.status_code == 200 and not body.get("errors"):
                    took.append(time.time() - sent)
                else:
                    failures.append(f"{response.status_code} {body}"[:300])

            await _paced(by_mutation)
        return len(took), took, failures[:5]
    store = await EventStore.connect(target, timeout=timeout, name="bench-submitter")
    try:
        bus = CommandBus(store)

        async def to_log(index: int) -> None:
            owner = owners[index % len(owners)][0]
            sent = time.time()
            command = SubmitTask(
                task_id=uuid7(),
                owner_id=UUID(owner),
                task_type="code.generate",
                payload={"sent": sent, "n": index},
            )
            actor = Actor(id=owner, kind="user")
            try:
                await bus.execute(command, CommandContext(command_id=str(uuid7()), actor=actor))
            except Exception as error:
                failures.append(repr(error)[:300])
                return
            took.append(time.time() - sent)

        await _paced(to_log)
    finally:
        await store.client.close()
    return len(took), took, failures[:5]


# --- the gateway process (this one) -------------------------------------------------------


async def _until_live(platform: Platform, count: int, timeout: float) -> float:
    """Until `count` `tasks` subscriptions are live; how many are (it may time out)."""
    deadline = time.monotonic() + timeout
    live = 0.0
    while time.monotonic() < deadline:
        live = (
            platform.metrics.get_sample_value(
                "sutazai_graphql_subscriptions_live", {"field": "tasks"}
            )
            or 0.0
        )
        if live >= count:
            break
        await asyncio.sleep(0.1)
    return live


class _GcPauses:
    """A `gc.callbacks` entry: how long each collection of the gateway process took."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.long: list[tuple[float, int, float]] = []
        """Pauses over 50 ms: when (wall clock), which generation, how long."""
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.seconds.append(took)
        if took > 0.05:
            self.long.append((time.time(), info["generation"], took))


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank] * 1000


def _line(name: str, value: float, unit: str) -> None:
    print(f"{name:<36}  {value:>12.1f}  ({unit})")


def _goal(name: str, value: float, bound: float) -> None:
    print(f"{name:<36}  {value:>10.1f}  goal <= {bound:g}")


def _tokens(platform: Platform, admin_id: UUID) -> tuple[list[str], list[tuple[str, str]]]:
    """Subscribers' access tokens and the owners of the tasks (user id, access token): users
    of their own, or the admin."""
    settings = platform.settings
    tokens = Tokens(platform.redis, jwt_secret(settings), access_seconds=3600, refresh_seconds=3600)
    if FOLLOW == "all":
        admin = tokens.access_token(Principal(admin_id, settings.admin_username, "admin"))
        return [admin] * SUBSCRIBERS, [(str(admin_id), admin)]
    users = [Principal(UUID(str(uuid7())), f"bench{n}", "user") for n in range(SUBSCRIBERS)]
    owners = [(str(user.user_id), tokens.access_token(user)) for user in users]
    return [token for _, token in owners], owners


async def run(platform: Platform, spawn: Any) -> None:
    """Subscribe, measure memory, submit, measure pushes; print the figures."""
    settings = platform.settings
    async with serve_gateway(platform, free_port()) as gateway_url:
        url = f"{gateway_url}/graphql"
        admin_token = await sign_in(url, settings.admin_username)
        admin_id = (
            Tokens(platform.redis, jwt_secret(settings), access_seconds=60, refresh_seconds=60)
            .verify(admin_token)
            .user_id
        )
        subscriber_tokens, owners = _tokens(platform, admin_id)
        loop = asyncio.get_running_loop()
        gc.collect()
        await asyncio.sleep(1)
        if TRACE:
            tracemalloc.start(8)
        before = rss_kb()

        ours, theirs = spawn.Pipe()
        ws_url = url.replace("http://", "ws://")
        subscribers = spawn.Process(target=_subscribers, args=(theirs, ws_url, subscriber_tokens))
        subscribers.start()
        opened = time.monotonic()
        await loop.run_in_executor(None, ours.recv)  # "subscribed"
        live = await _until_live(platform, SUBSCRIBERS, timeout=120)
        took = time.monotonic() - opened
        await asyncio.sleep(2)
        gc.collect()
        after = rss_kb()
        if TRACE:
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            traced = sum(stat.size for stat in snapshot.statistics("filename"))
            print(f"# traced {traced // 1024} KB allocated while subscribing, by file:")
            for stat in snapshot.statistics("filename")[:15]:
                print(f"#   {stat.size // 1024:>8} KB  {stat.traceback.format()[0].strip()}")
        per_subscriber = (after - before) / max(1.0, live)

        mine, submitter_end = spawn.Pipe()
        target = url if SOURCE == "graphql" else platform.stack.nats_url
        submitter = spawn.Process(
            target=_submitter,
            args=(submitter_end, SOURCE, target, owners, settings.store_timeout),
        )
        pauses = _GcPauses()
        gc.callbacks.append(pauses)
        submitting = time.time()
        submitter.start()
        accepted, submit_took, failures = await loop.run_in_executor(None, mine.recv)
        failed = int(RATE * SECONDS) - accepted
        submitter.join()
        gc.callbacks.remove(pauses)
        expected = accepted * (SUBSCRIBERS if FOLLOW == "all" else 1)
        settle = time.monotonic() + SETTLE
        while time.monotonic() < settle:  # until every push arrived, SETTLE s at most
            ours.send("count")
            if await loop.run_in_executor(None, ours.recv) >= expected:
                break
            await asyncio.sleep(0.5)
        ours.send("stop")
        answer = await loop.run_in_executor(None, ours.recv)
        latencies, sent, errors, error_count, closed, client_gc = answer
        subscribers.join()

    print(
        f"# {SUBSCRIBERS} subscribers ({FOLLOW}: "
        + ("each follows every task" if FOLLOW == "all" else "each follows its own tasks")
        + f"), submitTask at {RATE:g}/s for {SECONDS:g} s; clients in two processes of their own,"
        + (" offering" if DEFLATE else " not offering")
        + " permessage-deflate"
    )
    print(
        f"# submitted through {SOURCE}; all live in {took:.1f} s;"
        f" gateway RSS {before} KB before, {after} KB after"
    )
    _line("subscribers live", live, "count")
    _line("tasks submitted", accepted, "count")
    _line("submissions failed", failed, "count")
    _line("submit p50", _percentile(submit_took, 0.50), "ms")
    _line("submit p99", _percentile(submit_took, 0.99), "ms")
    _line("pushes expected", expected, "count")
    _line("pushes received", len(latencies), "count")
    _line("subscription errors", error_count, "count")
    _line("sockets closed by the gateway", closed, "count")
    _line("push p50", _percentile(latencies, 0.50), "ms")
    _line("push p99", _percentile(latencies, 0.99), "ms")
    _line("push max", max(latencies, default=float("nan")) * 1000, "ms")
    slow = sorted(s - submitting for s, took in zip(sent, latencies, strict=True) if took > 0.1)
    _line("pushes over 100 ms", len(slow), "count")
    if slow:
        seconds = sorted({round(s, 1) for s in slow})
        shown = ", ".join(f"{s:g}" for s in seconds[:12]) + (", …" if len(seconds) > 12 else "")
        print(f"# their events were submitted at {shown} s (since the submitter's start)")
    _line("gateway GC pauses while submitting", len(pauses.seconds), "count")
    _line("gateway GC pause max", max(pauses.seconds, default=0.0) * 1000, "ms")
    _line("subscriber process GC pause max", client_gc * 1000, "ms")
    for at, generation, took in pauses.long:
        print(
            f"# a generation {generation} GC of the gateway took {took * 1000:.0f} ms,"
            f" {at - submitting:.1f} s since the submitter's start"
        )
    _line("gateway RSS per idle subscriber", per_subscriber, "KB")
    for failure in failures + errors:
        print(f"# e.g. {failure}")
    missing = len(latencies) < expected
    _goal("subscribers p99 push (ms)", _percentile(latencies, 0.99), GOAL_P99_MS)
    _goal("subscribers KB per idle subscriber", per_subscriber, GOAL_KB)
    if missing:
        print(f"# {expected - len(latencies)} pushes missing: the p99 counts only those received")


async def main() -> None:
    configure_logging(level="warning")
    async with (
        bench_stack(bench_settings, SERVERS) as (settings, stack),
        serving_platform(settings, stack, ("users",)) as platform,
    ):
        await run(platform, multiprocessing.get_context("spawn"))


if __name__ == "__main__":
    asyncio.run(main())
