"""The code assistant: runs `code.generate`, `code.explain` and `code.review` tasks on the model.

Each replica is an agent of its own (its heartbeat, its tasks); it follows `TaskAssigned` with a
durable consumer of its own and takes only what is assigned to it (see `task_work`).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Annotated, Any, Literal

from faststream.nats import NatsRouter
from pydantic import BaseModel, Field

from domain.task import Task
from handlers.consumers import Delivered, Delivery
from handlers.model_port import ModelPort
from handlers.structured_output import UnusableAnswer, chat_structured
from handlers.task_work import TaskWorker
from schemas.envelope import EventEnvelope

CAPABILITIES = ["code.generate", "code.explain", "code.review"]
SYSTEM_PROMPT = "You are a careful senior software engineer. Answer briefly and precisely."


class Review(BaseModel):
    """A `code.review` answer; its JSON schema is what the model answers in.

    The lengths are the grammar's too: they make the model close its strings well within the
    default token budget, instead of rambling on until the answer is cut short.
    """

    summary: str = Field(max_length=160)
    issues: list[Annotated[str, Field(max_length=80)]] = Field(max_length=5)
    verdict: Literal["approve", "request_changes"]


def _prompt(task: Task) -> str:
    payload = task.payload
    text = str(payload.get("prompt") or payload.get("code") or payload.get("question") or "")
    if task.task_type == "code.explain":
        return f"Explain what this code does:\n\n{text}"
    if task.task_type == "code.review":
        return f"Review this code. List real problems only.\n\n{text}"
    language = payload.get("language", "Python")
    return f"Write {language} code for this request:\n\n{text}"


@dataclass(eq=False)
class CodeWork:
    """The code assistant's work on one task: the prompt, the model's answer, the result.

    Apart from the agent around it so that `sutazai agents eval` can run it again on recorded
    tasks, against another model, without a command.
    """

    model: ModelPort
    _: KW_ONLY
    max_tokens: int = 256

    async def __call__(self, task: Task, event: EventEnvelope) -> dict[str, Any]:
        """The task's result; raises a `ModelError` (`UnusableAnswer` among them)."""
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _prompt(task)},
        ]
        options = {"num_predict": self.max_tokens, "temperature": 0.2, "seed": 42}
        answer: dict[str, Any] = {}
        if task.task_type == "code.review":
            review, reply = await chat_structured(
                self.model, messages, Review, cause=event, purpose=task.task_type, options=options
            )
            answer["review"] = review.model_dump(mode="json")
        else:
            reply = await self.model.chat(
                messages, cause=event, purpose=task.task_type, options=options
            )
            if not reply.text.strip():
                raise UnusableAnswer("the model answered nothing")
            answer["text"] = reply.text
        return {
            "model": self.model.chat_model,
            "model_call_id": str(reply.call_id),
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            **answer,
        }


@dataclass(eq=False)
class CodeAssistant:
    """One replica of the code assistant."""

    worker: TaskWorker
    model: ModelPort
    _: KW_ONLY
    max_tokens: int = 256
    delivery: Delivery = field(default_factory=Delivery)

    def router(self) -> NatsRouter:
        """Its subscription: assignments, on a durable consumer of this replica."""
        router = NatsRouter()
        self.worker.consume_assignments(router, self.on_assigned, self.delivery)
        return router

    async def on_assigned(self, delivered: Delivered) -> None:
        """Run a task assigned to this replica."""
        await self.worker.on_assigned(delivered, CodeWork(self.model, max_tokens=self.max_tokens))
