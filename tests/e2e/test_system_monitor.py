"""The system monitor on the real servers: a server killed and restarted, a consumer falling
behind and catching up, an agent going silent and beating again — each one AlertRaised, then
one AlertCleared, and the gauges say the same."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from uuid import UUID

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry
from uuid_utils.compat import uuid4, uuid7

from commands.bus import CommandContext
from commands.loading import load_aggregate
from domain.agent import AgentKind, TakeAgentOffline
from domain.aggregates import ALERT
from domain.alert import Alert, alert_id_for
from domain.task import CancelTask, SubmitTask
from eventstore.streams import EVENTS_STREAM
from handlers.presence import agents_bucket, register
from handlers.system_monitor import MonitorPolicy, SystemMonitor, probes_of
from runtime.bootstrap import Platform, connect, run_projections
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import Actor
from tests.conftest import ServerFaults


@pytest.fixture
async def platform(settings: Settings, stack: Stack) -> AsyncIterator[Platform]:
    async with (
        connect(settings, stack) as connected,
        run_projections(settings, connected.store, connected.postgres, only=("agents",)),
    ):
        yield connected


@pytest.fixture
async def monitor(platform: Platform, stack: Stack) -> AsyncIterator[SystemMonitor]:
    watcher = SystemMonitor(
        platform.commands.bus,
        platform.store,
        platform.postgres,
        await agents_bucket(platform.store),
        probes_of(stack),
        CollectorRegistry(),
        MonitorPolicy(every=0.3, consumer_lag=1, probe_timeout=2.0),
    )
    async with watcher.watching():
        yield watcher


async def _alert_events(platform: Platform, name: str) -> list[str]:
    return [
        r.envelope.event_type
        async for r in platform.store.aggregate_events("alert", alert_id_for(name))
    ]


async def _until_alert(platform: Platform, name: str, *, active: bool, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = (await load_aggregate(platform.store, ALERT, alert_id_for(name))).state
        except Exception:  # NATS busy with a restart: ask again
            state = None
        if isinstance(state, Alert) and state.active == active:
            return
        assert time.monotonic() < deadline, f"{name} never became {'raised' if active else 'clear'}"
        await asyncio.sleep(0.2)


def _gauge(monitor: SystemMonitor, name: str, labels: dict[str, str] | None = None) -> float | None:
    return monitor.metrics.registry.get_sample_value(name, labels or {})


async def test_a_killed_server_raises_one_alert_naming_it_and_its_restart_clears_it(
    platform: Platform, monitor: SystemMonitor, server_faults: ServerFaults
) -> None:
    name = "server-down:redis"
    deadline = time.monotonic() + 30
    while _gauge(monitor, "sutazai_server_up", {"server": "redis"}) != 1:
        assert time.monotonic() < deadline, "the monitor never probed redis"
        await asyncio.sleep(0.1)
    before = await _alert_events(platform, name)
    assert not before or before[-1] == "AlertCleared"

    server_faults.kill("redis")
    await _until_alert(platform, name, active=True)
    assert _gauge(monitor, "sutazai_server_up", {"server": "redis"}) == 0
    raised = (await load_aggregate(platform.store, ALERT, alert_id_for(name))).state
    assert isinstance(raised, Alert)
    assert raised.name == name
    assert raised.severity == "critical"
    assert "redis" in raised.summary
    assert raised.details["server"] == "redis"
    await asyncio.sleep(1.5)  # several sweeps while it is down: still one raise

    await server_faults.restart("redis")
    await _until_alert(platform, name, active=False)
    assert _gauge(monitor, "sutazai_server_up", {"server": "redis"}) == 1
    assert (await _alert_events(platform, name))[len(before) :] == ["AlertRaised", "AlertCleared"]
    history = [
        r.envelope async for r in platform.store.aggregate_events("alert", alert_id_for(name))
    ]
    assert history[-1].actor.id == "system-monitor"


async def test_a_consumer_falling_behind_raises_an_alert_cleared_when_it_catches_up(
    platform: Platform, monitor: SystemMonitor
) -> None:
    durable = f"lagging-{uuid4().hex[:8]}"
    task_id = uuid7()
    js = platform.store.client.jetstream()
    await js.add_consumer(
        EVENTS_STREAM,
        ConsumerConfig(
            durable_name=durable,
            filter_subject=f"sutazai.events.task.{task_id}.*",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
        ),
    )
    name = f"consumer-lag:{durable}"
    try:
        bus = platform.commands.bus
        actor = Actor(id="lag-test", kind="system")
        await bus.execute(
            SubmitTask(task_id=task_id, owner_id=uuid7(), task_type="test.lag"),
            CommandContext(command_id=str(uuid7()), actor=actor),
        )
        await bus.execute(
            CancelTask(task_id=task_id), CommandContext(command_id=str(uuid7()), actor=actor)
        )
        await _until_alert(platform, name, active=True)
        assert _gauge(monitor, "sutazai_consumer_pending", {"consumer": durable}) == 2

        reader = await js.pull_subscribe_bind(durable, stream=EVENTS_STREAM)
        for message in await reader.fetch(2, timeout=10):
            await message.ack()
        await _until_alert(platform, name, active=False)
        assert await _alert_events(platform, name) == ["AlertRaised", "AlertCleared"]
        await reader.unsubscribe()
    finally:
        await js.delete_consumer(EVENTS_STREAM, durable)


async def test_an_online_agent_without_a_heartbeat_is_alerted_until_it_beats_again(
    platform: Platform, monitor: SystemMonitor
) -> None:
    agent_name = f"silent-{uuid4().hex[:8]}"
    card = await register(
        platform.commands.bus,
        name=agent_name,
        kind=AgentKind.CUSTOM,
        capabilities=[],
        model="none",
    )
    name = f"agent-silent:{agent_name}"
    await _until_alert(platform, name, active=True)  # online in the read model, never beat
    assert (_gauge(monitor, "sutazai_agents", {"heartbeat": "silent"}) or 0) >= 1

    bucket = await agents_bucket(platform.store)
    await bucket.put(card.agent_id, json.dumps(asdict(card)).encode())
    try:
        await _until_alert(platform, name, active=False)
    finally:
        await bucket.delete(card.agent_id)
        await platform.commands.bus.execute(
            TakeAgentOffline(agent_id=UUID(card.agent_id)),
            CommandContext(command_id=str(uuid7()), actor=card.actor),
        )
    assert await _alert_events(platform, name) == ["AlertRaised", "AlertCleared"]
