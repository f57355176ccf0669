"""Webhooks on the session's real NATS, against a real HTTP receiver on 127.0.0.1 that answers,
fails, hangs and recovers as a test tells it to."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError
from uuid_utils.compat import uuid4

from commands.bus import CommandBus
from eventstore.dlq import ParkedEvent, parked_events
from eventstore.store import EventStore
from handlers.background import nats_broker, start_broker, stop_broker
from handlers.integrations.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    consumer_name,
    verify,
)
from runtime.agents import webhooks
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import EventEnvelope
from tests.servers import free_port
from tests.tasks import completed_task

SECRET = "test-webhook-secret"


@dataclass
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next of `plan` (a status, or "hang"),
    then 200 once the plan is used up."""

    url: str
    plan: list[int | str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    def answered(self, status: int) -> list[Received]:
        return [r for r in self.requests if r.status == status]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as hook:
        yield hook


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A receiver on a free loopback port, with a path of its own (so a consumer of its own)."""
    port = free_port()
    path = f"/hooks/{uuid4().hex}"
    hook = Receiver(url=f"http://127.0.0.1:{port}{path}")

    async def on_post(request: web.Request) -> web.Response:
        body = await request.read()
        step = hook.plan.pop(0) if hook.plan else 200
        if step == "hang":
            hook.requests.append(Received(dict(request.headers), body, 0))
            await asyncio.sleep(5)
            return web.Response(status=200)
        assert isinstance(step, int)
        hook.requests.append(Received(dict(request.headers), body, step))
        return web.Response(status=step, text="ok" if step < 300 else "no")

    app = web.Application()
    app.router.add_post(path, on_post)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield hook
    await runner.cleanup()


@pytest.fixture
def quick(settings: Settings, receiver: Receiver) -> Settings:
    """Settings with the receiver as the one webhook, a short timeout and short backoff."""
    return settings.model_copy(
        update={
            "webhook_urls": [receiver.url],
            "webhook_secret": SecretStr(SECRET),
            "webhook_timeout": 0.5,
            "webhook_attempts": 3,
            "webhook_backoff": 0.1,
            "webhook_max_backoff": 0.2,
        }
    )


@pytest.fixture
async def running(quick: Settings, stack: Stack, event_store: EventStore) -> AsyncIterator[None]:
    """The webhook consumers as `sutazai agents run` builds them, on a broker of their own."""
    broker = nats_broker(stack.nats_url, drain_timeout=1.0)
    broker.include_router(webhooks(quick).router(event_store))
    await start_broker(broker)
    yield
    await stop_broker(broker, drain_timeout=1.0)


async def completed(store: EventStore) -> EventEnvelope:
    """A task completed through the bus; the envelope of its TaskCompleted."""
    return (await completed_task(CommandBus(store), {"answer": 42})).envelope


async def until(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


def of(receiver: Receiver, event: EventEnvelope) -> list[Received]:
    return [r for r in receiver.requests if json.loads(r.body)["event_id"] == str(event.event_id)]


async def test_a_completed_task_is_posted_once_with_a_valid_signature(
    running: None, receiver: Receiver, event_store: EventStore
) -> None:
    event = await completed(event_store)
    await until(lambda: bool(of(receiver, event)))
    await asyncio.sleep(0.3)  # nothing more comes
    (got,) = of(receiver, event)
    assert got.status == 200
    assert EventEnvelope.model_validate_json(got.body) == event
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Sutazai-Event-Id"] == str(event.event_id)
    assert got.headers["X-Sutazai-Event-Type"] == "TaskCompleted"
    timestamp = got.headers[TIMESTAMP_HEADER]
    assert abs(int(timestamp) - time.time()) < 10
    # The documented recipe, by hand: HMAC-SHA256 over "<timestamp>.<body>".
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + got.body, hashlib.sha256)
    assert got.headers[SIGNATURE_HEADER] == f"sha256={expected.hexdigest()}"
    assert verify(SECRET.encode(), timestamp, got.body, got.headers[SIGNATURE_HEADER])
    assert not verify(b"another secret", timestamp, got.body, got.headers[SIGNATURE_HEADER])
    assert not verify(SECRET.encode(), timestamp, got.body + b" ", got.headers[SIGNATURE_HEADER])
    stale = str(int(timestamp) - 3600)
    assert not verify(SECRET.encode(), stale, got.body, got.headers[SIGNATURE_HEADER])


async def test_a_receiver_that_fails_then_recovers_gets_the_event_again_and_once(
    running: None, receiver: Receiver, event_store: EventStore
) -> None:
    receiver.plan = [500, 503]
    event = await completed(event_store)
    await until(lambda: any(r.status == 200 for r in of(receiver, event)))
    await asyncio.sleep(0.5)  # no delivery after the success
    assert [r.status for r in of(receiver, event)] == [500, 503, 200]
    # Each try is signed afresh, and each signature holds for its own timestamp.
    for got in of(receiver, event):
        sent = got.headers[TIMESTAMP_HEADER]
        assert verify(SECRET.encode(), sent, got.body, got.headers[SIGNATURE_HEADER])
    assert [p async for p in parked_events(event_store, consumer_name(receiver.url))] == []


async def test_a_receiver_that_times_out_gets_the_event_again(
    running: None, receiver: Receiver, event_store: EventStore
) -> None:
    receiver.plan = ["hang"]
    event = await completed(event_store)
    await until(lambda: any(r.status == 200 for r in of(receiver, event)))
    await asyncio.sleep(0.3)
    assert [r.status for r in of(receiver, event)] == [0, 200]
    assert [p async for p in parked_events(event_store, consumer_name(receiver.url))] == []


async def test_a_receiver_that_always_fails_has_the_event_dead_lettered_after_the_tries(
    running: None, receiver: Receiver, event_store: EventStore
) -> None:
    receiver.plan = [500] * 10
    event = await completed(event_store)
    consumer = consumer_name(receiver.url)

    async def parked() -> list[ParkedEvent]:
        return [p async for p in parked_events(event_store, consumer)]

    async def one_parked() -> bool:
        return len(await parked()) == 1

    await until(one_parked)
    (entry,) = await parked()
    assert entry.envelope == event
    assert entry.event_type == "TaskCompleted"
    assert "answered 500" in entry.error
    assert receiver.url not in entry.error  # a URL may hold a token; the DLQ names the consumer
    await asyncio.sleep(0.5)  # parked means given up: no fourth try
    assert [r.status for r in of(receiver, event)] == [500, 500, 500]


def test_the_urls_come_from_the_environment_as_json_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUTAZAI_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("SUTAZAI_WEBHOOK_URLS", "https://a.example/h, https://b.example/h")
    assert Settings(_env_file=None).webhook_urls == ["https://a.example/h", "https://b.example/h"]
    monkeypatch.setenv("SUTAZAI_WEBHOOK_URLS", '["https://a.example/h"]')
    assert Settings(_env_file=None).webhook_urls == ["https://a.example/h"]
    monkeypatch.delenv("SUTAZAI_WEBHOOK_URLS")
    assert Settings(_env_file=None).webhook_urls == []


def test_urls_without_a_secret_are_an_invalid_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUTAZAI_WEBHOOK_URLS", "https://a.example/h")
    with pytest.raises(ValidationError, match="SUTAZAI_WEBHOOK_SECRET"):
        Settings(_env_file=None)
    monkeypatch.setenv("SUTAZAI_WEBHOOK_SECRET", "s3cret")
    assert Settings(_env_file=None).webhook_urls == ["https://a.example/h"]


def test_webhooks_without_a_secret_are_refused(settings: Settings) -> None:
    unsigned = settings.model_copy(update={"webhook_urls": ["https://a.example/h"]})
    with pytest.raises(ValueError, match="SUTAZAI_WEBHOOK_SECRET"):
        webhooks(unsigned)


async def test_each_url_has_a_consumer_of_its_own_so_a_dead_receiver_delays_no_other(
    quick: Settings, stack: Stack, event_store: EventStore
) -> None:
    async with receiving() as healthy, receiving() as broken:
        broken.plan = [500] * 10
        both = quick.model_copy(update={"webhook_urls": [broken.url, healthy.url]})
        broker = nats_broker(stack.nats_url, drain_timeout=1.0)
        broker.include_router(webhooks(both).router(event_store))
        await start_broker(broker)
        try:
            event = await completed(event_store)
            await until(lambda: bool(of(healthy, event)))
            assert [r.status for r in of(healthy, event)] == [200]

            async def parked() -> bool:
                found = [p async for p in parked_events(event_store, consumer_name(broken.url))]
                return [p.envelope for p in found] == [event]

            await until(parked)
            assert [r.status for r in of(broken, event)] == [500, 500, 500]
            assert [r.status for r in of(healthy, event)] == [200]
            assert consumer_name(broken.url) != consumer_name(healthy.url)
        finally:
            await stop_broker(broker, drain_timeout=1.0)
