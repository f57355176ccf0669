"""The whole platform on the session's servers: projectors running, the gateway on real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.trace import TracerProvider
from pydantic import SecretStr
from uuid_utils.compat import uuid4

from eventstore.streams import EVENTS_STREAM
from handlers.presence import agents_bucket, online_agents
from handlers.task_coordinator import CONSUMER as COORDINATOR_CONSUMER
from projections.runtime import ProjectionLagging, wait_for_sequence
from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import Platform
from runtime.settings import Settings
from runtime.stack import Stack
from tests.e2e.client import GraphQLClient, Session
from tests.serving import serve_platform

ADMIN_PASSWORD = "admin password for tests"


@dataclass
class Gateway:
    """A running gateway, its client, the platform under it and a signed-in admin."""

    url: str
    client: GraphQLClient
    platform: Platform
    admin: Session

    async def until_live(self, field: str, count: int = 1, timeout: float = 10.0) -> None:
        """Return once `count` subscriptions on `field` are live on the server: the gauge the
        gateway raises once a subscription's start in the log is fixed and NATS knows its
        interest. What a test waits on instead of sleeping before it appends."""
        deadline = time.monotonic() + timeout
        while self.live(field) < count:
            assert time.monotonic() < deadline, f"no live {field} subscription in {timeout}s"
            await asyncio.sleep(0.01)

    def live(self, field: str) -> float:
        """How many `field` subscriptions are live now."""
        value = self.platform.metrics.get_sample_value(
            "sutazai_graphql_subscriptions_live", {"field": field}
        )
        return value or 0.0

    async def submit_task(
        self, token: str, task_type: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Submit a task through GraphQL as a user: its `aggregateId` and `sequence`."""
        answer = await self.client.data(SUBMIT_TASK, {"type": task_type, "payload": payload}, token)
        submitted: dict[str, Any] = answer["submitTask"]
        return submitted

    async def projected(self, read_model: str, sequence: int) -> bool:
        """Whether a read model reached a sequence within ten seconds."""
        try:
            await wait_for_sequence(self.platform.postgres, read_model, sequence, timeout=10)
        except ProjectionLagging:
            return False
        return True


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, stack: Stack, *, tracing: TracerProvider | None = None, **overrides: Any
) -> AsyncIterator[Gateway]:
    """The platform as `sutazai up` runs it: projectors and the gateway (cheap argon2), traced
    into `tracing` when given."""
    values: dict[str, Any] = {
        "admin_password": SecretStr(ADMIN_PASSWORD),
        "projection_wait_seconds": 10.0,
        "rate_limit_per_ip": 1_000.0,
        "rate_limit_per_user": 1_000.0,
        "rate_limit_burst": 1_000.0,
    }
    values.update(overrides)
    gateway_settings = settings.model_copy(update=values)
    async with serve_platform(gateway_settings, stack, tracing=tracing) as (platform, url):
        client = GraphQLClient(url)
        admin = await client.sign_in(gateway_settings.admin_username, ADMIN_PASSWORD)
        try:
            yield Gateway(url=url, client=client, platform=platform, admin=admin)
        finally:
            await client.close()


@pytest.fixture
async def gateway(settings: Settings, stack: Stack) -> AsyncIterator[Gateway]:
    """A running gateway with generous rate limits."""
    async with running_gateway(settings, stack) as running:
        yield running


SUBMIT_TASK = """
mutation ($type: TaskType!, $payload: JSON) {
  submitTask(input: {taskType: $type, payload: $payload}) { aggregateId sequence }
}
"""
TASK = "query ($id: ID!) { task(id: $id) { status result error attempts agentId } }"


QUICK_AGENTS: dict[str, Any] = {
    "heartbeat_seconds": 0.5,
    "heartbeat_ttl": 3.0,
    "coordinator_sweep_seconds": 0.5,
}
"""Settings under which agents are seen online, and swept, within a second."""


@pytest.fixture
async def platform_with_agents(settings: Settings, stack: Stack) -> AsyncIterator[Gateway]:
    async with (
        running_gateway(settings, stack, **QUICK_AGENTS) as gateway,
        run_agents(gateway.platform, AgentOptions(replica=f"t{uuid4().hex[:8]}")),
    ):
        await coordinator_caught_up(gateway)
        yield gateway


async def coordinator_caught_up(gateway: Gateway, timeout: float = 120) -> None:
    """Until the shared coordinator consumer has gone through what earlier tests appended: a
    test that checks the event path (assignment caused by the submission) must not race a
    backlog, which the sweep would win."""
    js = gateway.platform.store.client.jetstream()
    deadline = time.monotonic() + timeout
    while True:
        info = await js.consumer_info(EVENTS_STREAM, COORDINATOR_CONSUMER)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert time.monotonic() < deadline, f"coordinator still {info.num_pending} behind"
        await asyncio.sleep(0.1)


async def until_done(
    gateway: Gateway,
    token: str,
    task_id: str,
    timeout: float,
    ends: tuple[str, ...] = (
        "COMPLETED",
        "COMPLETED_WITH_FAILURES",
        "FAILED",
        "CANCELLED",
        "TIMED_OUT",
    ),
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = (await gateway.client.data(TASK, {"id": task_id}, token))["task"]
        if task and task["status"] in ends:
            return task
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.2)


async def until_online(gateway: Gateway, name: str, deadline: float) -> None:
    """Wait until the agent called `name` is online (its card in the agents bucket), until the
    `time.monotonic()` deadline."""
    bucket = await agents_bucket(gateway.platform.store)
    while name not in {card.name for card in await online_agents(bucket)}:
        assert time.monotonic() < deadline, f"{name} never came online"
        await asyncio.sleep(0.2)
