"""Every long-running part stops within its deadline while busy, and loses nothing acknowledged.

Each test makes its part busy for real (a subscription open, a model call stalled inside a
frozen model server, a batch blocked on a row lock, requests in flight), stops it, and times the
stop against the drain deadline from the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
import ollama
import psutil
import pytest
import websockets
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from prometheus_client import CollectorRegistry
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandBus
from commands.dispatch import CommandDispatcher
from domain.task import CancelTask
from eventstore.store import EventStore
from handlers.command_endpoint import command_endpoint
from projections.runtime import checkpoint_of, wait_for_sequence
from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import run_projections
from runtime.gateway_wiring import serve_gateway
from runtime.servers.base import ServerOptions
from runtime.servers.redis import RedisServer
from runtime.settings import Settings
from runtime.stack import Stack
from tests.conftest import ServerFaults
from tests.e2e.client import subscribe
from tests.e2e.conftest import running_gateway
from tests.servers import free_port, scratch_dir
from tests.tasks import ALICE, OWNER, context, new_submission

DRAIN = 2.0
SLACK = 3.0
"""What a loaded 2-core machine may add to a deadline (scheduling, not waiting)."""

EVENTS = "subscription { events(afterSequence: 0) { sequence } }"
SUBMIT = """
mutation { submitTask(input: {taskType: "code.generate", payload: {prompt: "fizzbuzz"}}) {
  aggregateId } }
"""
TASK = "query ($id: ID!) { task(id: $id) { status } }"


@contextlib.contextmanager
def frozen(pgid: int) -> Iterator[None]:
    """A server that takes requests and never answers: its process group SIGSTOPped."""
    os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


async def _timed_close(exits: contextlib.AsyncExitStack) -> float:
    started = time.monotonic()
    await exits.aclose()
    return time.monotonic() - started


async def test_the_gateway_stops_in_time_with_a_subscription_open_and_a_request_stuck(
    settings: Settings, stack: Stack
) -> None:
    model_pid = stack.embedded("model").pid
    assert model_pid is not None
    async with (
        running_gateway(settings, stack, drain_timeout=DRAIN) as gateway,
        contextlib.AsyncExitStack() as exits,
    ):
        # A second gateway on the same platform (metrics of its own), stopped under the test.
        second = dataclasses.replace(gateway.platform, metrics=CollectorRegistry())
        url = await exits.enter_async_context(serve_gateway(second, free_port()))
        token = gateway.admin.access_token
        async with subscribe(url, EVENTS, {}, token) as subscription:
            await subscription.next()  # events are flowing: the subscription is live
            with frozen(model_pid):
                # A search embeds its query on the model server, which will never answer.
                before = _model_connections(second)
                stuck = asyncio.create_task(_search(url, token))
                await _until_in_flight(second, before)
                took = await _timed_close(exits)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await _drain(subscription)
        assert took < DRAIN + SLACK, f"the gateway took {took:.1f}s to stop"
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012  # service restart: come back later
        cut_off = await stuck  # at the deadline: an error, never a half answer
        assert cut_off.status_code == 500, cut_off.text
        # The platform under it goes on: the other gateway still answers.
        assert (await gateway.client.data("{ __typename }"))["__typename"] == "Query"


async def _search(url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(
            f"{url}/graphql",
            json={"query": '{ searchDocuments(query: "tides", k: 1) { documentId } }'},
            headers={"Authorization": f"Bearer {token}"},
        )


async def _until_in_flight(platform: Any, before: int) -> None:
    """Until the request is inside the gateway, waiting on the model server: one more
    connection from this process to the model server's port."""
    deadline = time.monotonic() + 10
    while _model_connections(platform) <= before:
        assert time.monotonic() < deadline, "the search never reached the model server"
        await asyncio.sleep(0.02)


def _model_connections(platform: Any) -> int:
    port = platform.stack.embedded("model").port
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def _drain(subscription: Any) -> None:
    """Read what was already on its way until the socket closes."""
    while True:
        await subscription.next(timeout=DRAIN + SLACK)


async def _until_status(
    gateway: Any, token: str, task_id: str, wanted: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        task = (await gateway.client.data(TASK, {"id": task_id}, token))["task"]
        if task and task["status"] == wanted:
            return
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.1)


async def test_agents_stop_in_time_with_a_model_call_stalled_and_the_task_still_completes(
    settings: Settings, stack: Stack
) -> None:
    quick: dict[str, Any] = {
        "drain_timeout": DRAIN,
        "heartbeat_seconds": 0.5,
        "heartbeat_ttl": 3.0,
        "coordinator_sweep_seconds": 0.5,
    }
    only = ("task-coordinator", "code-assistant")
    async with running_gateway(settings, stack, **quick) as gateway:
        user = await gateway.client.sign_up()
        model_pid = stack.embedded("model").pid
        assert model_pid is not None
        async with contextlib.AsyncExitStack() as agents:
            cards = await agents.enter_async_context(
                run_agents(gateway.platform, AgentOptions(only=only, replica=f"s{uuid4().hex[:6]}"))
            )
            (coder,) = [card for card in cards if card.name.startswith("code-assistant-")]
            with frozen(model_pid):
                await gateway.client.data(SUBMIT, token=user.access_token)
                # Running means the code assistant is inside its model call, which cannot end.
                # (Tasks other tests left pending may come first: whichever it runs will do.)
                task_id = await _running_task_of(gateway.platform.postgres, coder.agent_id)
                took = await _timed_close(agents)
        # The broker's grace for the message in hand, then cancelled and handed back.
        assert took < 2 * DRAIN + SLACK, f"the agents took {took:.1f}s to stop"

        # Nothing acknowledged is lost: another replica takes the task over and completes it.
        async with run_agents(
            gateway.platform, AgentOptions(only=only, replica=f"s{uuid4().hex[:6]}")
        ):
            await _until_status(
                gateway, gateway.admin.access_token, task_id, "COMPLETED", timeout=240
            )


async def _running_task_of(postgres: Any, agent_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        task_id = await postgres.fetchval(
            "SELECT task_id FROM tasks WHERE agent_id = $1 AND status = 'running'", UUID(agent_id)
        )
        if task_id is not None:
            return str(task_id)
        assert time.monotonic() < deadline, "the code assistant never started a task"
        await asyncio.sleep(0.05)


async def test_the_command_endpoint_stops_in_time_with_nats_stalled_and_keeps_what_it_accepted(
    stack: Stack, dispatcher: CommandDispatcher, nats_client: NatsClient, event_store: EventStore
) -> None:
    async with contextlib.AsyncExitStack() as exits:
        await exits.enter_async_context(
            command_endpoint(stack.nats_url, dispatcher, drain_timeout=DRAIN)
        )
        answers: dict[str, dict[str, Any] | None] = {}

        async def submit() -> None:
            command_id = str(uuid7())
            body = {
                "command_id": command_id,
                "actor": ALICE.model_dump(),
                "reason": "shutdown test",
                # A conversation: no agent work follows, so nothing is left for later tests' agents.
                "payload": {"owner_id": str(OWNER), "title": "shutdown"},
            }
            try:
                reply = await nats_client.request(
                    "sutazai.cmd.StartConversation",
                    json.dumps(body).encode(),
                    timeout=3 * DRAIN + SLACK,
                )
                answers[command_id] = json.loads(reply.data)
            except (NoRespondersError, NatsTimeout):
                answers[command_id] = None  # not taken, or taken and not answered: never "ok"

        nats_pid = stack.embedded("nats").pid
        assert nats_pid is not None
        sending = [asyncio.create_task(submit()) for _ in range(300)]
        await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)  # busy answering
        with frozen(nats_pid):  # appends in flight now wait, and so would a drain
            took = await _timed_close(exits)
        await asyncio.gather(*sending)

        assert took < 2 * DRAIN + 1 + SLACK, f"the endpoint took {took:.1f}s to stop"
        accepted = [cid for cid, answer in answers.items() if answer and answer["ok"]]
        assert accepted
        for command_id in accepted:
            conversation = event_store.aggregate_events("conversation", UUID(command_id))
            events = [e.envelope.event_type async for e in conversation]
            assert events == ["ConversationStarted"], command_id


async def test_projections_stop_in_time_mid_batch_and_catch_up_after_losing_nothing(
    settings: Settings, stack: Stack, bus: CommandBus, postgres: Any, event_store: EventStore
) -> None:
    quick = settings.model_copy(update={"drain_timeout": DRAIN})
    first = new_submission()
    submitted = await bus.execute(first, context())
    async with run_projections(quick, event_store, postgres, only=("tasks",)):
        await wait_for_sequence(postgres, "tasks", submitted.sequence, timeout=10)

    async with contextlib.AsyncExitStack() as projections:
        await projections.enter_async_context(
            run_projections(quick, event_store, postgres, only=("tasks",))
        )
        blocker = await postgres.acquire()
        lock = blocker.transaction()
        await lock.start()
        try:
            # The next batch that touches this row waits on the lock, its transaction open.
            await blocker.execute(
                "SELECT 1 FROM tasks WHERE task_id = $1 FOR UPDATE", first.task_id
            )
            second = new_submission()
            await bus.execute(second, context())
            cancelled = await bus.execute(CancelTask(task_id=first.task_id), context())
            while await _waiting_on_locks(postgres) == 0:  # the batch has reached the lock
                await asyncio.sleep(0.02)
            took = await _timed_close(projections)
            stopped_at = await checkpoint_of(postgres, "tasks")
        finally:
            await lock.rollback()
            await postgres.release(blocker)
        assert took < DRAIN + SLACK, f"the projections took {took:.1f}s to stop"
        assert stopped_at < cancelled.sequence, "the blocked batch rolled back with its checkpoint"

        async with run_projections(quick, event_store, postgres, only=("tasks",)):
            await wait_for_sequence(postgres, "tasks", cancelled.sequence, timeout=10)
        rows = {
            row["task_id"]: row["status"]
            for row in await postgres.fetch(
                "SELECT task_id, status FROM tasks WHERE task_id = ANY($1::uuid[])",
                [first.task_id, second.task_id],
            )
        }
        assert rows == {first.task_id: "cancelled", second.task_id: "pending"}


async def _waiting_on_locks(postgres: Any) -> int:
    count: int = await postgres.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    )
    return count


async def test_the_model_server_stops_in_time_with_a_generation_running(
    settings: Settings, stack: Stack, server_faults: ServerFaults
) -> None:
    client = ollama.AsyncClient(host=stack.model_url)
    stream = await client.chat(
        model=settings.chat_model,
        messages=[{"role": "user", "content": "Tell a very long story about the sea."}],
        stream=True,
        options={"num_predict": 4000},
    )
    await anext(stream)  # a token is out: the generation is running
    started = time.monotonic()
    server_faults.stopped("model")
    await stack.embedded("model").stop()
    took = time.monotonic() - started
    with contextlib.suppress(Exception):
        async for _ in stream:  # the client sees its stream end, one way or another
            pass
    # Within the server's own graceful bound, well before the stop deadline's SIGKILL.
    assert took < settings.stop_timeout, f"the model server took {took:.1f}s to stop"


async def test_a_server_that_ignores_its_stop_signal_is_killed_at_the_deadline() -> None:
    root = scratch_dir()
    server = RedisServer(
        ServerOptions(root=root, startup_timeout=30, stop_timeout=DRAIN), port=free_port()
    )
    await server.start()
    pid = server.pid
    assert pid is not None
    os.killpg(pid, signal.SIGSTOP)  # SIGTERM now waits for ever in the kernel
    started = time.monotonic()
    await server.stop()
    took = time.monotonic() - started
    assert DRAIN <= took < DRAIN + SLACK
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
