"""Subscriptions of one gateway share one reader of the event stream, and a slow one is dropped.

Checked against the real NATS server (its consumers on the event stream) and real websockets: a
client that stops reading fills its socket, then its bounded queue at the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import orjson
import websockets
from uuid_utils.compat import uuid7

from commands.bus import CommandContext
from domain.task import SubmitTask
from eventstore.streams import EVENTS_STREAM
from gateway.fanout import ALL_EVENTS, fanout_of
from schemas.envelope import EVENT_SUBJECT_PREFIX, Actor
from tests.e2e.client import OpenSubscription, subscribe
from tests.e2e.conftest import Gateway

EVENTS = """
subscription ($after: Int) {
  events(filter: {aggregateType: "task", eventType: "TaskSubmitted"}, afterSequence: $after) {
    sequence data
  }
}
"""
SUBSCRIBERS = 5


async def _submit(gateway: Gateway, owner: UUID, count: int, payload: dict[str, Any]) -> list[int]:
    """`count` tasks through the command bus; their sequences."""
    bus = gateway.platform.commands.bus
    actor = Actor(id=str(owner), kind="user")
    sequences = []
    for _ in range(count):
        task = SubmitTask(
            task_id=uuid7(), owner_id=owner, task_type="test.explain", payload=payload
        )
        result = await bus.execute(task, CommandContext(command_id=str(uuid7()), actor=actor))
        sequences.append(result.sequence)
    return sequences


async def _until_following(
    gateway: Gateway, count: int, *, at_most: bool = False, timeout: float = 30.0
) -> None:
    """Until `count` subscriptions (or, `at_most`, no more than that) are served by the
    gateway's shared reader."""
    fanout = fanout_of(gateway.platform.store)
    deadline = time.monotonic() + timeout
    while fanout.followers > count if at_most else fanout.followers < count:
        assert time.monotonic() < deadline, f"{fanout.followers} following, not {count}"
        await asyncio.sleep(0.01)


async def _event_stream_consumers(gateway: Gateway) -> dict[str, str]:
    """The NATS server's ephemeral consumers of the event stream: name to subject filter."""
    js = gateway.platform.store.client.jetstream()
    consumers = await js.consumers_info(EVENTS_STREAM)
    return {
        c.name: c.config.filter_subject or ""
        for c in consumers
        if c.config.durable_name is None
        and (c.config.filter_subject or "").startswith(EVENT_SUBJECT_PREFIX)
    }


async def test_the_subscriptions_of_a_gateway_share_one_consumer_of_the_event_stream(
    gateway: Gateway,
) -> None:
    start = await gateway.platform.store.last_sequence()
    before = await _event_stream_consumers(gateway)
    token = gateway.admin.access_token
    async with contextlib.AsyncExitStack() as opened:
        subscriptions: list[OpenSubscription] = [
            await opened.enter_async_context(
                subscribe(gateway.url, EVENTS, {"after": start}, token)
            )
            for _ in range(SUBSCRIBERS)
        ]
        await gateway.until_live("events", SUBSCRIBERS)
        await _until_following(gateway, SUBSCRIBERS)
        sequences = await _submit(gateway, uuid7(), 3, {})
        for subscription in subscriptions:
            seen = [(await subscription.next())["data"]["events"]["sequence"] for _ in sequences]
            assert seen == sequences
        during = await _event_stream_consumers(gateway)

    new = {name: subject for name, subject in during.items() if name not in before}
    assert list(new.values()) == [ALL_EVENTS]  # one for all five, not one each


async def test_a_subscriber_that_stops_reading_is_dropped_and_never_holds_back_the_others(
    gateway: Gateway,
) -> None:
    fanout = fanout_of(gateway.platform.store)
    fanout.queue_limit = 64  # far more than the reading one ever lags behind
    start = await gateway.platform.store.last_sequence()
    token = gateway.admin.access_token
    async with (
        _stalled(gateway.url, EVENTS, {"after": start}, token) as stalled,
        subscribe(gateway.url, EVENTS, {"after": start}, token) as reading,
    ):
        await gateway.until_live("events", 2)
        await _until_following(gateway, 2)
        # Events of 32 KB each: 9.6 MB overfill the stalled socket's buffers (the server's
        # send buffer grows to 4 MB at most here), then the 64 places the gateway keeps for it.
        sequences = await _submit(gateway, uuid7(), 300, {"text": "x" * 32 * 1024})
        seen = [(await reading.next())["data"]["events"]["sequence"] for _ in sequences]
        assert seen == sequences  # the reading one got everything, in order
        await _until_following(gateway, 1, at_most=True)  # the stalled one is dropped...
        messages = await _drain(stalled)  # ...and when it reads at last, it learns why
    delivered = [
        m["payload"]["data"]["events"]["sequence"]
        for m in messages
        if m["type"] == "next" and m["payload"].get("data")
    ]
    errors = [m for m in messages if m["type"] == "error" or m.get("payload", {}).get("errors")]
    assert delivered == sequences[: len(delivered)]  # no gap before the drop
    assert len(delivered) < len(sequences)
    assert len(errors) == 1, [str(m)[:200] for m in messages[-3:]]
    error = (errors[0]["payload"].get("errors") or errors[0]["payload"])[0]
    assert error["extensions"]["code"] == "UNAVAILABLE"
    assert f"afterSequence: {delivered[-1]}" in error["message"]


@contextlib.asynccontextmanager
async def _stalled(url: str, query: str, variables: dict[str, Any], token: str) -> Any:
    """A graphql-transport-ws subscription whose client reads nothing until drained: a small
    receive buffer, and a websocket that stops reading from it after one message."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    async with websockets.connect(
        url.replace("http://", "ws://") + "/graphql",
        sock=sock,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        compression=None,
        max_queue=1,
    ) as connection:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await connection.send(orjson.dumps(init).decode())
        assert orjson.loads(await connection.recv())["type"] == "connection_ack"
        message = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": query, "variables": variables},
        }
        await connection.send(orjson.dumps(message).decode())
        yield connection


async def _drain(connection: Any) -> list[dict[str, Any]]:
    """Every message until the subscription ends (an error or complete)."""
    messages: list[dict[str, Any]] = []
    while True:
        message = orjson.loads(await asyncio.wait_for(connection.recv(), 30))
        messages.append(message)
        if message["type"] in ("error", "complete"):
            return messages
