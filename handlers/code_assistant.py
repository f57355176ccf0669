"""The code assistant: runs `code.generate`, `code.explain` and `code.review` tasks on the model.

Each replica is an agent of its own (its heartbeat, its tasks); it follows `TaskAssigned` with a
durable consumer of its own and takes only what is assigned to it. Every command it sends
derives its id from the assignment event, and is guarded so that a task taken away from it
(its heartbeat lapsed) cannot be finished by it any more.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import structlog
from faststream.nats import NatsRouter
from pydantic import BaseModel

from commands.aggregates import TASK
from commands.bus import CommandBus, CommandContext
from commands.guard import Forbidden, Guard
from commands.loading import load_aggregate
from domain.errors import DomainError
from domain.task import CompleteTask, FailTask, StartTask, Task, TaskError, TaskStatus
from eventstore.store import EventStore
from handlers.consumers import Delivery, consume
from handlers.model_port import ModelError, ModelPort
from handlers.presence import AgentCard
from schemas.envelope import EventEnvelope

log = structlog.get_logger(__name__)

CAPABILITIES = ["code.generate", "code.explain", "code.review"]
SYSTEM_PROMPT = "You are a careful senior software engineer. Answer briefly and precisely."
REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "issues": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "verdict": {"type": "string", "enum": ["approve", "request_changes"]},
    },
    "required": ["summary", "issues", "verdict"],
}


class UnusableAnswer(ModelError):
    """The model's answer does not have the shape the task needs."""

    code = "INVALID_MODEL_OUTPUT"


def _held_by(agent_id: UUID) -> Guard:
    def guard(state: BaseModel | None) -> None:
        if getattr(state, "agent_id", None) != agent_id:
            raise Forbidden("the task is no longer assigned to this agent")

    return guard


def _prompt(task: Task) -> str:
    payload = task.payload
    text = str(payload.get("prompt") or payload.get("code") or payload.get("question") or "")
    if task.task_type == "code.explain":
        return f"Explain what this code does:\n\n{text}"
    if task.task_type == "code.review":
        return f"Review this code. List real problems only.\n\n{text}"
    language = payload.get("language", "Python")
    return f"Write {language} code for this request:\n\n{text}"


class CodeAssistant:
    """One replica of the code assistant."""

    def __init__(
        self,
        bus: CommandBus,
        store: EventStore,
        model: ModelPort,
        card: AgentCard,
        *,
        max_tokens: int = 256,
        delivery: Delivery | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.model = model
        self.card = card
        self.max_tokens = max_tokens
        self.delivery = delivery or Delivery()
        self._me = UUID(card.agent_id)

    def router(self) -> NatsRouter:
        """Its subscription: assignments, on a durable consumer of this replica."""
        router = NatsRouter()
        consume(
            router,
            self.store,
            consumer=f"worker-{self.card.name}",
            subject="sutazai.events.task.*.TaskAssigned",
            handle=self.on_assigned,
            delivery=self.delivery,
            give_up=self.give_up,
        )
        return router

    def _context(self, event: EventEnvelope, purpose: str) -> CommandContext:
        return CommandContext.caused_by(event, self.card.actor, purpose)

    async def on_assigned(self, event: EventEnvelope) -> None:
        """Run a task assigned to this replica: start, ask the model, complete or fail."""
        if event.data.get("agent_id") != self.card.agent_id:
            return
        loaded = await load_aggregate(self.store, TASK, event.aggregate_id)
        task = loaded.state
        if not isinstance(task, Task) or task.agent_id != self._me:
            return  # taken away (or cancelled) since
        if task.status not in (TaskStatus.ASSIGNED, TaskStatus.RUNNING):
            return  # finished already: this is a redelivery of work done
        mine = _held_by(self._me)
        if task.task_type not in CAPABILITIES:
            await self._fail(event, "UNSUPPORTED_TASK_TYPE", task.task_type, retryable=False)
            return
        try:
            await self.bus.execute(
                StartTask(task_id=task.task_id), self._context(event, "start"), guard=mine
            )
        except DomainError as error:
            log.info("code_assistant.not_started", task=str(task.task_id), reason=str(error))
            return
        try:
            result = await self._work(task, event)
        except ModelError as error:
            await self._fail(event, error.code, str(error), retryable=error.retryable)
            return
        try:
            await self.bus.execute(
                CompleteTask(task_id=task.task_id, result=result),
                self._context(event, "complete"),
                guard=mine,
            )
        except DomainError as error:
            log.info("code_assistant.not_completed", task=str(task.task_id), reason=str(error))

    async def _work(self, task: Task, event: EventEnvelope) -> dict[str, Any]:
        review = task.task_type == "code.review"
        reply = await self.model.chat(
            [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": _prompt(task)},
            ],
            cause=event,
            purpose=task.task_type,
            options={"num_predict": self.max_tokens, "temperature": 0.2, "seed": 42},
            schema=REVIEW_SCHEMA if review else None,
        )
        result: dict[str, Any] = {
            "model": self.model.chat_model,
            "model_call_id": str(reply.call_id),
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
        }
        if review:
            try:
                result["review"] = json.loads(reply.text)
            except ValueError as error:
                raise UnusableAnswer(f"the review is not JSON: {error}") from error
        else:
            if not reply.text.strip():
                raise UnusableAnswer("the model answered nothing")
            result["text"] = reply.text
        return result

    async def _fail(
        self, event: EventEnvelope, code: str, message: str, *, retryable: bool
    ) -> None:
        error = TaskError(code=code, message=message[:10_000], retryable=retryable)
        try:
            await self.bus.execute(
                FailTask(task_id=event.aggregate_id, error=error),
                self._context(event, "fail"),
                guard=_held_by(self._me),
            )
        except DomainError as refused:
            log.info("code_assistant.not_failed", task=str(event.aggregate_id), reason=str(refused))

    async def give_up(self, event: EventEnvelope, error: BaseException) -> None:
        """After the last delivery: the task fails with a typed error (the event is on the DLQ)."""
        await self._fail(event, "AGENT_GAVE_UP", repr(error), retryable=True)
