"""Ready means ready: a part counts as ready only once it is live on the server, and /readyz
says 200 only while every part of the process is ready."""

from __future__ import annotations

import contextlib
import json

import httpx
from nats.aio.client import Client as NatsClient
from uuid_utils.compat import uuid4, uuid7

from commands.dispatch import CommandDispatcher
from handlers.command_endpoint import command_endpoint
from runtime.agents import AgentOptions, run_agents
from runtime.settings import Settings
from runtime.stack import Stack
from tests.e2e.conftest import running_gateway
from tests.tasks import ALICE, OWNER


async def _readyz(url: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{url}/readyz", timeout=10)
    return response.status_code, response.json()


async def test_readyz_answers_200_only_while_every_part_is_ready(
    settings: Settings, stack: Stack
) -> None:
    async with running_gateway(settings, stack, drain_timeout=2.0) as gateway:
        readiness = gateway.platform.readiness
        assert readiness.parts() == ["gateway", "projections"]
        assert await _readyz(gateway.url) == (200, {"status": "ready", "failed": {}})

        async with contextlib.AsyncExitStack() as agents:
            await agents.enter_async_context(
                run_agents(gateway.platform, AgentOptions(only=("task-coordinator",), replica="r"))
            )
            # Entered means live: its consumers exist on the server and it says so.
            assert await _readyz(gateway.url) == (200, {"status": "ready", "failed": {}})
            assert readiness.parts() == ["agents", "gateway", "projections"]

            readiness.expect("latecomer")  # a part that has begun to start and is not live yet
            status, body = await _readyz(gateway.url)
            assert status == 503
            assert body["failed"] == {"parts": "PartsNotLive('not ready: latecomer')"}
            readiness.ready("latecomer")
            assert (await _readyz(gateway.url))[0] == 200

            await agents.aclose()  # a stopped part is not ready again: a balancer stops sending
            status, body = await _readyz(gateway.url)
            assert status == 503
            assert body["failed"] == {"parts": "PartsNotLive('not ready: agents')"}


async def test_the_first_request_after_the_endpoint_is_entered_is_answered(
    stack: Stack, dispatcher: CommandDispatcher, nats_client: NatsClient
) -> None:
    """No "no responders" right after start: entered means every subscription is on the
    server. Many starts in a row, each asked at once, from another connection."""
    subsz = (
        f"http://127.0.0.1:{stack.settings.nats_monitor_port}/subsz"
        "?subs=1&test=sutazai.cmd.StartConversation"
    )
    for _ in range(25):
        async with command_endpoint(stack.nats_url, dispatcher, drain_timeout=1.0):
            # Asked of the server while this loop is blocked, so the client cannot write a SUB
            # it had only queued: the server already knows the endpoint's subscription.
            known = httpx.get(subsz, timeout=5).json()["total"]  # noqa: ASYNC210
            assert known >= 1
            body = {
                "command_id": str(uuid7()),
                "actor": ALICE.model_dump(),
                "reason": f"readiness {uuid4().hex[:6]}",
                # A conversation: no agent work follows, so nothing is left for later tests' agents.
                "payload": {"owner_id": str(OWNER), "title": "shutdown"},
            }
            reply = await nats_client.request(
                "sutazai.cmd.StartConversation", json.dumps(body).encode(), timeout=5
            )
            assert json.loads(reply.data)["ok"] is True
