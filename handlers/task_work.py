"""How any worker agent carries out a task assigned to it: start, work, complete or fail.

Every command derives its id from the assignment event, and is guarded so that a task taken
away from the agent (its heartbeat lapsed, the task was reassigned) cannot be started, finished
or failed by it any more. A redelivered assignment of a finished task does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any
from uuid import UUID

import structlog
from faststream.nats import NatsRouter
from pydantic import BaseModel

from commands.bus import CommandBus, CommandContext
from commands.guard import Forbidden, Guard
from commands.loading import load_aggregate
from domain.aggregates import TASK
from domain.errors import DomainError
from domain.task import (
    CompleteTask,
    FailTask,
    StartTask,
    Task,
    TaskAssigned,
    TaskError,
    TaskStatus,
)
from eventstore.store import EventStore
from handlers.consumers import Delivered, Delivery, Handle, consume
from handlers.presence import AgentCard
from handlers.work_errors import WorkError
from schemas.envelope import EventEnvelope

log = structlog.get_logger(__name__)

ASSIGNED = "sutazai.events.task.*.TaskAssigned"
"""The subject of every task assignment."""

Work = Callable[[Task, EventEnvelope], Awaitable[dict[str, Any] | None]]
"""Does the task's work, caused by its assignment: returns the result the task completes with,
or None when the work completes the task itself later (a workflow, once its children end);
raises a `WorkError` (a `ModelError`, say) to fail it with that error's code."""


def held_by(agent_id: UUID) -> Guard:
    """A guard: the task must still be assigned to this agent."""

    def guard(state: BaseModel | None) -> None:
        if getattr(state, "agent_id", None) != agent_id:
            raise Forbidden("the task is no longer assigned to this agent")

    return guard


class TaskWorker:
    """Runs the tasks assigned to one agent with the work function of each task type."""

    def __init__(
        self, bus: CommandBus, store: EventStore, card: AgentCard, capabilities: Collection[str]
    ) -> None:
        self.bus = bus
        self.store = store
        self.card = card
        self.capabilities = frozenset(capabilities)
        self.me = UUID(card.agent_id)

    def _context(self, event: EventEnvelope, purpose: str) -> CommandContext:
        return CommandContext.caused_by(event, self.card.actor, purpose)

    async def on_assigned(self, delivered: Delivered, work: Work) -> None:
        """Carry out the task of a `TaskAssigned` event, if it names this agent: check it is
        still this agent's to do, start it, work, then complete or fail it."""
        match delivered.event:
            case TaskAssigned(agent_id=agent_id) if agent_id == self.me:
                pass
            case _:
                return  # another replica's assignment
        event = delivered.envelope
        task = (await load_aggregate(self.store, TASK, event.aggregate_id)).state
        if not isinstance(task, Task) or task.agent_id != self.me:
            return  # taken away (or cancelled) since
        if task.status not in (TaskStatus.ASSIGNED, TaskStatus.RUNNING):
            return  # finished already: this is a redelivery of work done
        mine = held_by(self.me)
        if task.task_type not in self.capabilities:
            await self.fail(event, "UNSUPPORTED_TASK_TYPE", task.task_type, retryable=False)
            return
        try:
            start = StartTask(task_id=task.task_id)
            await self.bus.execute(start, self._context(event, "start"), guard=mine)
        except DomainError as error:
            log.info("task.not_started", task=str(task.task_id), reason=str(error))
            return
        try:
            result = await work(task, event)
        except WorkError as error:
            await self.fail(event, error.code, str(error), retryable=error.retryable)
            return
        if result is None:
            return
        try:
            complete = CompleteTask(task_id=task.task_id, result=result)
            await self.bus.execute(complete, self._context(event, "complete"), guard=mine)
        except DomainError as error:
            log.info("task.not_completed", task=str(task.task_id), reason=str(error))

    async def fail(self, event: EventEnvelope, code: str, message: str, *, retryable: bool) -> None:
        """Fail the task with a typed error (if it is still this agent's)."""
        error = TaskError(code=code, message=message[:10_000], retryable=retryable)
        try:
            await self.bus.execute(
                FailTask(task_id=event.aggregate_id, error=error),
                self._context(event, "fail"),
                guard=held_by(self.me),
            )
        except DomainError as refused:
            log.info("task.not_failed", task=str(event.aggregate_id), reason=str(refused))

    def consume_assignments(self, router: NatsRouter, handle: Handle, delivery: Delivery) -> None:
        """Register `handle` for task assignments on this replica's own durable consumer; an
        assignment whose deliveries run out fails its task (`give_up`)."""
        consume(
            router,
            self.store,
            consumer=f"worker-{self.card.name}",
            subject=ASSIGNED,
            handle=handle,
            delivery=delivery,
            give_up=self.give_up,
        )

    async def give_up(self, delivered: Delivered, error: BaseException) -> None:
        """After the last delivery: the task fails with a typed error (the event is on the DLQ)."""
        await self.fail(delivered.envelope, "AGENT_GAVE_UP", repr(error), retryable=True)


class WorkerAgent:
    """An agent that takes tasks through a `TaskWorker`: it commands and reads through it too."""

    worker: TaskWorker

    @property
    def bus(self) -> CommandBus:
        """The command bus its commands go through."""
        return self.worker.bus

    @property
    def store(self) -> EventStore:
        """The event store it reads."""
        return self.worker.store
