"""The task coordinator: gives pending tasks to online agents that can do them.

It reacts to `TaskSubmitted` and `TaskRetried` at once, and sweeps on a timer for what events
alone cannot tell: tasks still pending (no agent was online), tasks held by an agent whose
heartbeat expired (reassigned), retryable failures (tried again after a pause), and running
tasks past their deadline (timed out). The sweeps
read the `tasks` read model; every change is a command, never a write of its own.

Choice: highest priority first, then the owner with the fewest tasks in flight (fair among
owners), then the oldest; among able agents, the one given the fewest tasks lately.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from faststream.nats import NatsRouter
from nats.js.kv import KeyValue
from pydantic import BaseModel

from commands.bus import CommandBus, CommandContext
from commands.guard import Forbidden, Guard
from domain.errors import (
    AggregateNotFound,
    DomainError,
    IllegalTransition,
    RetryLimitReached,
    TaskNotRetryable,
)
from domain.task import (
    AssignTask,
    RetryTask,
    TaskRetried,
    TaskStatus,
    TaskSubmitted,
    TimeOutTask,
)
from eventstore.store import EventStore
from handlers.background import repeating
from handlers.consumers import Delivered, Delivery, consume
from handlers.presence import AgentCard, online_agents
from schemas.envelope import Actor

log = structlog.get_logger(__name__)

CONSUMER = "task-coordinator"
COORDINATOR = Actor(id="task-coordinator", kind="agent")

MOVED_ON = (IllegalTransition, TaskNotRetryable, RetryLimitReached, AggregateNotFound)
"""What a sweep's retry or time-out may meet when the log is ahead of the read model."""


@dataclass(frozen=True)
class CoordinatorPolicy:
    """How often the coordinator sweeps and how many tasks it looks at each time."""

    sweep_every: float = 2.0
    batch: int = 200
    retry_after: float = 5.0
    """Seconds, times the attempts made, before a retryable failure is tried again."""


@dataclass(eq=False)
class TaskCoordinator:
    """Assigns, reassigns and times out tasks."""

    bus: CommandBus
    postgres: asyncpg.Pool
    agents: KeyValue
    policy: CoordinatorPolicy = field(default_factory=CoordinatorPolicy)
    _given: Counter[str] = field(init=False, default_factory=Counter)
    """Tasks this replica has given each agent: among able agents, the fewest wins."""

    def router(self, store: EventStore) -> NatsRouter:
        """Its subscription: new and retried tasks, shared by every coordinator replica."""
        router = NatsRouter()
        consume(
            router,
            store,
            consumer=CONSUMER,
            subject="sutazai.events.task.*.*",
            handle=self.on_task_event,
            delivery=Delivery(ack_wait=30.0),
        )
        return router

    async def on_task_event(self, delivered: Delivered) -> None:
        """Assign a task that has just become pending.

        Events older than two sweeps are left to the sweep, which finds every pending task in
        the read model anyway: a coordinator started after downtime (or after the others of a
        test run wrote thousands of events) goes through its backlog at once instead of
        listing the online agents for each, and new tasks are assigned without waiting.
        """
        event = delivered.envelope
        task_type: str | None
        match delivered.event:
            case TaskSubmitted(task_type=submitted_type):
                task_type = submitted_type
            case TaskRetried():
                task_type = None  # the type is in the task's first event
            case _:
                return
        age = (datetime.now(UTC) - event.occurred_at).total_seconds()
        if age > 2 * self.policy.sweep_every:
            return
        if task_type is None:
            row = await self.postgres.fetchrow(
                "SELECT task_type FROM tasks WHERE task_id = $1", event.aggregate_id
            )
            if row is None:
                return  # the sweep will find it once the read model has it
            task_type = row["task_type"]
        agent = self._choose(await online_agents(self.agents), str(task_type), exclude=None)
        if agent is None:
            return  # nobody can do it now: the sweep tries again
        context = CommandContext.caused_by(event, COORDINATOR, "assign")
        await self._assign(event.aggregate_id, agent, context, _still_pending)

    def _choose(
        self, agents: Sequence[AgentCard], task_type: str, exclude: str | None
    ) -> AgentCard | None:
        able = [a for a in agents if a.can_do(task_type) and a.agent_id != exclude]
        if not able:
            return None
        return min(able, key=lambda a: (self._given[a.agent_id], a.name))

    async def _assign(
        self, task_id: UUID, agent: AgentCard, context: CommandContext, guard: Guard
    ) -> None:
        assign = AssignTask(task_id=task_id, agent_id=UUID(agent.agent_id))
        try:
            await self.bus.execute(assign, context, guard=guard)
        except DomainError as error:
            # Cancelled or already taken meanwhile: nothing to do.
            log.info("coordinator.not_assigned", task=str(task_id), reason=str(error))
            return
        self._given[agent.agent_id] += 1
        log.info("coordinator.assigned", task=str(task_id), agent=agent.name)

    async def sweep(self) -> None:
        """One round: pending tasks, tasks of vanished agents, tasks past their deadline.

        Only tasks some online agent can do are looked at: a backlog nobody can take must not
        fill the batch and starve the work somebody can.
        """
        agents = await online_agents(self.agents)
        online = {a.agent_id for a in agents}
        doable = sorted({kind for agent in agents for kind in agent.capabilities})
        for row in await self._pending(doable):
            agent = self._choose(agents, row["task_type"], exclude=None)
            if agent is not None:
                context = _sweep_context(row, "assign")
                await self._assign(row["task_id"], agent, context, _still_pending)
        for row in await self._held(doable):
            if str(row["agent_id"]) in online:
                continue
            agent = self._choose(agents, row["task_type"], exclude=str(row["agent_id"]))
            if agent is not None:
                log.warning("coordinator.reassigning", task=str(row["task_id"]))
                context = _sweep_context(row, "reassign")
                await self._assign(row["task_id"], agent, context, _held_by(row["agent_id"]))
        for row in await self._retryable():
            await self._settle(RetryTask(task_id=row["task_id"]), _sweep_context(row, "retry"))
        for row in await self._overdue():
            await self._settle(TimeOutTask(task_id=row["task_id"]), _sweep_context(row, "time-out"))

    async def _settle(self, command: RetryTask | TimeOutTask, context: CommandContext) -> None:
        """Retry or time out one task the read model listed; the log may have moved on since.

        Only the refusals a stale read model explains are expected (the task was retried,
        completed or cancelled meanwhile, or used its attempts): they are logged at info and
        skipped. Any other domain refusal, `Forbidden` above all, is a fault and is logged at
        error; the sweep then goes on with the next task, so one task refused every round
        cannot starve the others. Errors of the store propagate and end the round.
        """
        fields = {"command": type(command).__name__, "task": str(command.task_id)}
        try:
            await self.bus.execute(command, context)
        except MOVED_ON as error:
            log.info("coordinator.not_settled", **fields, code=error.code, reason=str(error))
        except DomainError as error:
            log.error("coordinator.refused", **fields, code=error.code, reason=str(error))

    async def _batch(self, query: str, *arguments: Any) -> list[Any]:
        """The rows of a sweep's query, whose `$1` is the number of rows one sweep takes."""
        return await self.postgres.fetch(query, self.policy.batch, *arguments)

    async def _pending(self, doable: list[str]) -> list[Any]:
        # Fair among owners: an owner's n-th pending task waits behind others' first ones.
        return await self._batch(
            "SELECT task_id, task_type, version FROM ("
            "  SELECT task_id, task_type, version, priority, created_at,"
            "   row_number() OVER (PARTITION BY owner_id ORDER BY priority, created_at) AS turn"
            "  FROM tasks WHERE status = 'pending' AND task_type = ANY($2::text[])) AS queue"
            " ORDER BY priority, turn, created_at LIMIT $1",
            doable,
        )

    async def _held(self, doable: list[str]) -> list[Any]:
        return await self._batch(
            "SELECT task_id, task_type, agent_id, version FROM tasks"
            " WHERE status IN ('assigned', 'running') AND task_type = ANY($2::text[])"
            " ORDER BY priority, created_at LIMIT $1",
            doable,
        )

    async def _retryable(self) -> list[Any]:
        # A failure that may pass (the model server was down, say) is tried again after a pause
        # that grows with the attempts, until the task's attempts are used up.
        return await self._batch(
            "SELECT task_id, version FROM tasks WHERE status = 'failed'"
            " AND (error->>'retryable')::boolean AND attempts < max_attempts"
            " AND updated_at + make_interval(secs => $2 * attempts) < now() LIMIT $1",
            self.policy.retry_after,
        )

    async def _overdue(self) -> list[Any]:
        return await self._batch(
            "SELECT task_id, version FROM tasks WHERE status IN ('assigned', 'running')"
            " AND deadline_seconds IS NOT NULL"
            " AND updated_at + make_interval(secs => deadline_seconds) < now() LIMIT $1"
        )

    @contextlib.asynccontextmanager
    async def sweeping(self) -> AsyncIterator[None]:
        """Sweep every `sweep_every` seconds until the block ends."""

        async with repeating("coordinator.sweep", self.sweep, every=self.policy.sweep_every):
            yield


def _still_pending(state: BaseModel | None) -> None:
    """Assign only what nobody took meanwhile (the read model may be behind the log)."""
    if getattr(state, "status", None) != TaskStatus.PENDING:
        raise Forbidden("the task is no longer pending")


def _held_by(agent_id: UUID) -> Guard:
    """Take a task away only from the agent that was lost, not from its new holder."""

    def guard(state: BaseModel | None) -> None:
        if getattr(state, "agent_id", None) != agent_id or getattr(state, "status", None) not in (
            TaskStatus.ASSIGNED,
            TaskStatus.RUNNING,
        ):
            raise Forbidden("the task is no longer held by the lost agent")

    return guard


def _sweep_context(row: Any, purpose: str) -> CommandContext:
    """A sweep's command id names the task's version: seen twice, it is the same command."""
    return CommandContext(
        command_id=f"{purpose}.{row['task_id']}.v{row['version']}",
        actor=COORDINATOR,
        reason=f"coordinator sweep: {purpose}",
    )
