"""A 3-node NATS cluster loses the leader of `SUTAZAI_EVENTS` under load, and nothing is lost.

Commands go at a fixed rate through the command dispatcher (the bus) and over NATS
request/reply (plain nats-py, as another program would send them) while the node that leads the
event stream is SIGKILLed and later restarted. A command that gets a typed `UNAVAILABLE` (or no
answer in time) is retried with the same `command_id`. Afterwards: every acknowledged command's
event is in the stream exactly once, every aggregate's versions run 1..n with no gap, and every
read model equals a fresh rebuild from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import pytest
from uuid_utils.compat import uuid7

from eventstore.streams import EVENTS_STREAM
from projections.rebuild import verify
from runtime.bootstrap import PROJECTORS, Platform, run_projections, serve_commands
from runtime.servers.nats import NatsServer
from runtime.stack import Stack
from schemas.commands import CommandRequest
from schemas.envelope import Actor
from tests.chaos.platforms import own_platform
from tests.servers import free_port_run

pytestmark = pytest.mark.phase_timeout(240)

INTERVAL = 0.04
"""Seconds between two commands a driver sends: a fixed, open-loop rate of 25/s per driver."""
BEFORE_KILL = 2.0
DOWN_FOR = 15.0
"""Longer than a failover takes (nats-server's Raft elects within 4-9 s of losing a leader): a
window this long means the cluster waited for the node to come back."""
FAILOVER_BOUND = 12.0
"""The longest unavailability a failover may cause: Raft's 9 s at most, reconnects, retries."""
AFTER_RESTART = 4.0
RETRY_DEADLINE = 30.0
REQUEST_TIMEOUT = 2.0
ACTOR = Actor(id="failover", kind="system")


@dataclass
class Tally:
    """What the drivers saw, command by command."""

    sent: int = 0
    acked: dict[str, tuple[str, int]] = field(default_factory=dict)
    """command_id -> (aggregate_id, version) once answered ok."""
    unavailable: int = 0
    no_answer: int = 0
    untyped: list[str] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    """When each failed attempt was sent."""
    successes: list[float] = field(default_factory=list)
    """When each successful attempt was answered."""

    def window(self) -> float:
        """First failed attempt to the first success after it (seconds; 0 if none failed)."""
        if not self.failures:
            return 0.0
        first = min(self.failures)
        after = [t for t in self.successes if t > first]
        return (min(after) - first) if after else float("inf")


def _cluster_platform(stack: Stack) -> contextlib.AbstractAsyncContextManager[Platform]:
    """A platform on a 3-node NATS cluster of its own."""
    return own_platform(
        stack,
        "failover",
        nats_cluster=3,
        nats_port=free_port_run(3),
        nats_monitor_port=free_port_run(3),
        nats_route_port=free_port_run(3),
        store_timeout=REQUEST_TIMEOUT,
        drain_timeout=2.0,
    )


async def _leader(platform: Platform) -> NatsServer:
    js = platform.store.client.jetstream(timeout=5)
    info = await js.stream_info(EVENTS_STREAM)
    assert info.cluster is not None, info
    assert info.cluster.leader, info
    nodes = {node.server_name: node for node in platform.stack.nats_nodes()}
    return nodes[info.cluster.leader]


def _submit(command_id: str) -> CommandRequest:
    return CommandRequest(
        command_id=command_id,
        actor=ACTOR,
        payload={"owner_id": str(uuid7()), "task_type": "test.failover", "priority": 3},
    )


async def _until_acked(tally: Tally, command_id: str, attempt: Any, name: str) -> None:
    """Retry one command with its command_id until it is answered ok (bounded)."""
    deadline = time.monotonic() + RETRY_DEADLINE
    while time.monotonic() < deadline:
        started = time.monotonic()  # a failure counts from when its attempt was sent
        try:
            reply = await attempt()
        except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
            tally.no_answer += 1
            tally.failures.append(started)
            await asyncio.sleep(0.2)
            continue
        if reply.get("ok"):
            tally.acked[command_id] = (reply["aggregate_id"], reply["version"])
            tally.successes.append(time.monotonic())
            return
        code = reply["error"]["code"]
        if code != "UNAVAILABLE":
            tally.untyped.append(f"{name} {command_id}: {reply['error']}")
            return
        tally.unavailable += 1
        tally.failures.append(started)
        await asyncio.sleep(0.2)
    tally.untyped.append(f"{name} {command_id}: still failing after {RETRY_DEADLINE}s")


async def _drive(platform: Platform, tally: Tally, stop: asyncio.Event) -> None:
    """Two open-loop drivers: the dispatcher in process, and request/reply over NATS."""
    requester = await nats.connect(
        platform.stack.nats_url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    in_flight: set[asyncio.Task[None]] = set()

    async def by_bus(command_id: str) -> dict[str, Any]:
        reply = await platform.commands.dispatch("SubmitTask", _submit(command_id))
        answer: dict[str, Any] = reply.model_dump(mode="json")
        return answer

    async def by_request(command_id: str) -> dict[str, Any]:
        body = _submit(command_id).model_dump_json().encode()
        message = await requester.request("sutazai.cmd.SubmitTask", body, timeout=REQUEST_TIMEOUT)
        answer: dict[str, Any] = json.loads(message.data)
        return answer

    try:
        turn = 0
        while not stop.is_set():
            command_id = str(uuid7())
            path, name = (by_bus, "bus") if turn % 2 == 0 else (by_request, "request")
            turn += 1
            tally.sent += 1
            task = asyncio.create_task(
                _until_acked(tally, command_id, lambda c=command_id, p=path: p(c), name)
            )
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            await asyncio.sleep(INTERVAL)
        await asyncio.gather(*in_flight)
    finally:
        await requester.close()


async def _events_by_command(platform: Platform) -> tuple[Counter[str], dict[str, list[int]]]:
    """Every event in the stream: how often each command_id appears, versions per aggregate."""
    per_command: Counter[str] = Counter()
    versions: dict[str, list[int]] = defaultdict(list)
    async for recorded in platform.store.read():
        envelope = recorded.envelope
        per_command[envelope.command_id] += 1
        versions[str(envelope.aggregate_id)].append(envelope.aggregate_version)
    return per_command, versions


async def test_commands_survive_the_loss_of_the_event_stream_leader(stack: Stack) -> None:
    async with (
        _cluster_platform(stack) as platform,
        run_projections(platform.settings, platform.store, platform.postgres),
        serve_commands(platform),
    ):
        tally = Tally()
        stop = asyncio.Event()
        driving = asyncio.create_task(_drive(platform, tally, stop))
        await asyncio.sleep(BEFORE_KILL)  # traffic at a steady rate before the fault
        leader = await _leader(platform)
        leader.kill()
        killed_at = time.monotonic()
        await asyncio.sleep(DOWN_FOR)
        await leader.start()
        await asyncio.sleep(AFTER_RESTART)
        stop.set()
        await driving
        new_leader = await _leader(platform)

        per_command, versions = await _events_by_command(platform)
        lost = [c for c in tally.acked if per_command[c] == 0]
        duplicated = [c for c, n in per_command.items() if n > 1]
        gaps = {a: v for a, v in versions.items() if sorted(v) != list(range(1, len(v) + 1))}
        checks = [
            await verify(platform.store, platform.postgres, projector) for projector in PROJECTORS
        ]
        print(
            f"\nfailover: {tally.sent} commands sent, {len(tally.acked)} acked, "
            f"{tally.unavailable} attempts answered UNAVAILABLE, {tally.no_answer} not answered "
            f"in {REQUEST_TIMEOUT}s (all retried with their command_id), lost {len(lost)}, "
            f"duplicated {len(duplicated)}; leader {leader.server_name} killed "
            f"{killed_at - min(tally.successes):.1f}s in, new leader {new_leader.server_name}; "
            f"unavailability window {tally.window():.2f}s"
        )

    assert tally.untyped == []
    assert len(tally.acked) == tally.sent
    assert lost == []
    assert duplicated == []
    assert gaps == {}
    assert all(check.matches for checks_of in checks for check in checks_of), checks
    assert tally.failures, "the fault never reached a client: the test proved nothing"
    assert tally.window() < FAILOVER_BOUND, "no failover: commands waited for the killed node"
