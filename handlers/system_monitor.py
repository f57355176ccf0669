"""The system monitor: watches the servers, the log's consumers and the agents, and turns each
condition that starts or ends into an `AlertRaised` or `AlertCleared` event.

Every `every` seconds it runs three checks, each yielding named conditions, failing or not:
- `server-down:<server>`: the server's probe (the stack's health check) fails or hangs;
- `consumer-lag:<consumer>`: a durable consumer of `SUTAZAI_EVENTS` has more than
  `consumer_lag` events not yet delivered (JetStream's `num_pending`);
- `agent-silent:<agent>`: the `agents` read model says online (or busy) and the agent's
  heartbeat key in `sutazai_agents` is gone.
An alert is an aggregate whose id derives from the condition's name; the monitor sends a command
only when a condition changes (and the domain ignores a raise of a raised alert), so an outage is
one `AlertRaised` and its end one `AlertCleared`, whatever the number of sweeps or replicas.
On its first sight of a condition it reads the alert from the log, so a restarted monitor clears
what its predecessor raised. A transition that cannot be recorded (NATS itself down) is tried
again on the next sweep; meanwhile the Prometheus gauges, on the registry given, tell it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncpg
import structlog
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter, Gauge
from uuid_utils.compat import uuid7

from commands.bus import CommandBus, CommandContext
from commands.loading import load_aggregate
from domain.aggregates import ALERT
from domain.alert import Alert, AlertSeverity, ClearAlert, RaiseAlert, alert_id_for
from domain.model import Payload
from eventstore.store import EventStore
from eventstore.streams import DLQ_STREAM, EVENTS_STREAM
from handlers.background import repeating
from handlers.presence import online_agents
from schemas.envelope import Actor

log = structlog.get_logger(__name__)

MONITOR = Actor(id="system-monitor", kind="agent")

Probe = Callable[[], Awaitable[None]]
"""Returns when the server answers; raises (or hangs) when it does not."""


@dataclass(frozen=True)
class MonitorPolicy:
    """How often the monitor looks, and what counts as a problem."""

    every: float = 10.0
    consumer_lag: int = 1_000
    """Undelivered events a durable consumer may have before it is alerted on."""
    probe_timeout: float = 3.0


@dataclass(frozen=True)
class Condition:
    """One watched condition as a check found it."""

    name: str
    failing: bool
    summary: str
    severity: AlertSeverity = AlertSeverity.WARNING
    details: Payload = field(default_factory=dict)


def condition_name(check: str, subject: str) -> str:
    """`<check>:<subject>`, in the characters an alert name allows."""
    return f"{check}:{re.sub(r'[^a-z0-9_.:-]', '-', subject.lower())}"


class MonitorMetrics:
    """The monitor's Prometheus gauges, on a registry of its own (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.server_up = Gauge(
            "sutazai_server_up",
            "1 when the server answers its probe",
            ["server"],
            registry=registry,
        )
        self.consumer_pending = Gauge(
            "sutazai_consumer_pending",
            "Events a durable consumer of SUTAZAI_EVENTS has not been delivered yet",
            ["consumer"],
            registry=registry,
        )
        self.consumer_ack_pending = Gauge(
            "sutazai_consumer_ack_pending",
            "Events delivered to a durable consumer and not yet acknowledged",
            ["consumer"],
            registry=registry,
        )
        self.events_last_sequence = Gauge(
            "sutazai_events_last_sequence", "The last sequence of SUTAZAI_EVENTS", registry=registry
        )
        self.dlq_messages = Gauge(
            "sutazai_dlq_messages", "Events parked on SUTAZAI_DLQ", registry=registry
        )
        self.agents = Gauge(
            "sutazai_agents",
            "Agents the read model says online, by heartbeat (alive or silent)",
            ["heartbeat"],
            registry=registry,
        )
        self.alerts_active = Gauge(
            "sutazai_alerts_active", "Alerts this monitor knows as raised", registry=registry
        )
        self.disk_free = Gauge(
            "sutazai_disk_free_bytes",
            "Free bytes on the disk that holds a place of the platform's data",
            ["place"],
            registry=registry,
        )
        self.disk_size = Gauge(
            "sutazai_disk_size_bytes",
            "Size in bytes of the disk that holds a place of the platform's data",
            ["place"],
            registry=registry,
        )
        self.check_failures = Counter(
            "sutazai_monitor_check_failures",
            "Checks that could not run (their server down, say)",
            ["check"],
            registry=registry,
        )


class SystemMonitor:
    """Checks, metrics and alert transitions; `watching()` runs it on a timer."""

    def __init__(
        self,
        bus: CommandBus,
        store: EventStore,
        postgres: asyncpg.Pool,
        agents: KeyValue,
        probes: Mapping[str, Probe],
        registry: CollectorRegistry,
        policy: MonitorPolicy | None = None,
        disks: Mapping[str, Path] | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.postgres = postgres
        self.agents = agents
        self.probes = dict(probes)
        self.metrics = MonitorMetrics(registry)
        self.policy = policy or MonitorPolicy()
        self.disks = dict(disks or {})
        """Places whose disk is measured (`data`: the data directory, say), by label."""
        self._raised: dict[str, bool] = {}
        """Condition name -> whether its alert is raised, as last recorded (or read)."""

    # --- checks -----------------------------------------------------------------------------

    async def check_servers(self) -> list[Condition]:
        """`server-down:<name>` for every probe."""

        async def one(name: str, probe: Probe) -> Condition:
            try:
                await asyncio.wait_for(probe(), timeout=self.policy.probe_timeout)
            except Exception as error:
                self.metrics.server_up.labels(name).set(0)
                return Condition(
                    condition_name("server-down", name),
                    failing=True,
                    severity=AlertSeverity.CRITICAL,
                    summary=f"{name} does not answer its health check: {error!r}"[:2_000],
                    details={"server": name, "error": repr(error)[:1_000]},
                )
            self.metrics.server_up.labels(name).set(1)
            return Condition(
                condition_name("server-down", name),
                failing=False,
                summary=f"{name} answers again",
                details={"server": name},
            )

        return list(await asyncio.gather(*(one(n, p) for n, p in self.probes.items())))

    async def check_consumers(self) -> list[Condition]:
        """`consumer-lag:<consumer>` for every durable consumer of the log."""
        js = self.store.jetstream()
        events = await js.stream_info(EVENTS_STREAM)
        self.metrics.events_last_sequence.set(events.state.last_seq)
        dlq = await js.stream_info(DLQ_STREAM)
        self.metrics.dlq_messages.set(dlq.state.messages)
        conditions = []
        for info in await js.consumers_info(EVENTS_STREAM):
            durable = info.config.durable_name
            if not durable:
                continue  # an ordered or ephemeral reader (a tail, a subscription): not a worker
            pending = int(info.num_pending or 0)
            unacknowledged = int(info.num_ack_pending or 0)
            self.metrics.consumer_pending.labels(durable).set(pending)
            self.metrics.consumer_ack_pending.labels(durable).set(unacknowledged)
            lagging = pending > self.policy.consumer_lag
            conditions.append(
                Condition(
                    condition_name("consumer-lag", durable),
                    failing=lagging,
                    summary=(
                        f"{durable} is {pending} events behind the log "
                        f"(more than {self.policy.consumer_lag})"
                        if lagging
                        else f"{durable} caught up ({pending} events behind)"
                    ),
                    details={
                        "consumer": durable,
                        "pending": pending,
                        "ack_pending": unacknowledged,
                        "threshold": self.policy.consumer_lag,
                    },
                )
            )
        return conditions

    async def check_agents(self) -> list[Condition]:
        """`agent-silent:<agent>` for every agent the read model knows."""
        rows = await self.postgres.fetch(
            "SELECT agent_id, name, status FROM agents WHERE status <> 'retired'"
        )
        beating = {card.agent_id for card in await online_agents(self.agents)}
        conditions = []
        silent = alive = 0
        for row in rows:
            said_online = row["status"] in ("online", "busy")
            has_heartbeat = str(row["agent_id"]) in beating
            failing = said_online and not has_heartbeat
            silent += failing
            alive += said_online and has_heartbeat
            conditions.append(
                Condition(
                    condition_name("agent-silent", str(row["name"])),
                    failing=failing,
                    summary=(
                        f"agent {row['name']} is {row['status']} but its heartbeat expired"
                        if failing
                        else f"agent {row['name']} is {row['status']} and its heartbeat agrees"
                    ),
                    details={"agent_id": str(row["agent_id"]), "agent": str(row["name"])},
                )
            )
        self.metrics.agents.labels("alive").set(alive)
        self.metrics.agents.labels("silent").set(silent)
        return conditions

    # --- transitions ------------------------------------------------------------------------

    async def check_disks(self) -> list[Condition]:
        """Free and total bytes of each place's disk, for /metrics (alerting on them is
        Prometheus's: the threshold belongs to whoever runs the disk)."""
        for place, path in self.disks.items():
            while not path.exists() and path != path.parent:
                path = path.parent
            usage = await asyncio.to_thread(shutil.disk_usage, path)
            self.metrics.disk_free.labels(place).set(usage.free)
            self.metrics.disk_size.labels(place).set(usage.total)
        return []

    async def sweep(self) -> None:
        """One round: run every check, then record each condition that changed."""
        checks: dict[str, Callable[[], Awaitable[list[Condition]]]] = {
            "servers": self.check_servers,
            "consumers": self.check_consumers,
            "agents": self.check_agents,
            "disks": self.check_disks,
        }
        conditions: list[Condition] = []
        for check, run in checks.items():
            try:
                conditions += await run()
            except Exception as error:  # its server is down: the server check says so
                self.metrics.check_failures.labels(check).inc()
                log.warning("monitor.check_failed", check=check, error=repr(error))
        for condition in conditions:
            try:
                await self._settle(condition)
            except Exception as error:  # the log cannot take it now: next sweep tries again
                log.warning("monitor.alert_not_recorded", alert=condition.name, error=repr(error))
                break
        self.metrics.alerts_active.set(sum(self._raised.values()))

    async def _settle(self, condition: Condition) -> None:
        raised = self._raised.get(condition.name)
        alert_id = alert_id_for(condition.name)
        if raised is None:
            state = (await load_aggregate(self.store, ALERT, alert_id)).state
            raised = isinstance(state, Alert) and state.active
            self._raised[condition.name] = raised
        if condition.failing == raised:
            return
        command: RaiseAlert | ClearAlert
        if condition.failing:
            command = RaiseAlert(
                alert_id=alert_id,
                name=condition.name,
                severity=condition.severity,
                summary=condition.summary,
                details=condition.details,
            )
        else:
            command = ClearAlert(alert_id=alert_id, summary=condition.summary)
        context = CommandContext(command_id=str(uuid7()), actor=MONITOR, reason=condition.summary)
        await self.bus.execute(command, context)
        self._raised[condition.name] = condition.failing
        (log.warning if condition.failing else log.info)(
            "monitor.alert_raised" if condition.failing else "monitor.alert_cleared",
            alert=condition.name,
            summary=condition.summary,
        )

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[SystemMonitor]:
        """Sweep every `every` seconds (the first at once) until the block ends."""

        async with repeating("monitor.sweep", self.sweep, every=self.policy.every):
            yield self


class Probed(Protocol):
    """A server with a name and a health check (what `runtime.stack.Stack` iterates)."""

    name: str

    async def check(self) -> None:
        """Return when the server answers."""


def probes_of(servers: Iterable[Probed]) -> dict[str, Probe]:
    """The health check of every server of a stack, by server name."""
    return {server.name: server.check for server in servers}
