"""Replay evaluation: run an agent's work again on tasks it was given, and compare.

The log keeps what triggered each run (`TaskAssigned`), what the run ended in (`TaskCompleted`
or `TaskFailed`, caused by that assignment) and its model call (`ModelCalled`, whose id derives
from the assignment and the purpose). An evaluation reads those, runs the same work function on
the same task against a model of its choice, and puts the two side by side. It only reads the
log: no command is sent, and the new run's model calls are collected in memory, not recorded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from commands.loading import load_aggregate
from domain.aggregates import TASK
from domain.model_call import RecordModelCall
from domain.task import Task
from eventstore.store import EventStore
from handlers.model_port import ModelError, call_id_for
from handlers.task_work import ASSIGNED
from schemas.envelope import EventEnvelope, RecordedEvent

Work = Callable[[Task, EventEnvelope], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class RunOutcome:
    """How one run of a task ended: `completed` or `failed`, the class of its result (`text`,
    `review:approve`, or the error's code), and what its model calls cost."""

    status: str
    result_class: str
    model: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def valid(self) -> bool:
        """Whether the run produced a usable result."""
        return self.status == "completed"


@dataclass(frozen=True)
class Comparison:
    """One recorded task (its assignment's sequence), its recorded run and the new one."""

    sequence: int
    task: Task
    recorded: RunOutcome
    new: RunOutcome
    result: dict[str, Any] | None = field(default=None, compare=False)
    """The new run's result (for the details file)."""

    @property
    def task_id(self) -> UUID:
        """The task run twice."""
        return self.task.task_id

    @property
    def task_type(self) -> str:
        """What kind of task it is."""
        return self.task.task_type

    @property
    def same_class(self) -> bool:
        """Whether both runs ended the same way (both texts, the same verdict, the same error)."""
        return self.recorded.result_class == self.new.result_class

    def details(self) -> dict[str, Any]:
        """Everything about the comparison, as JSON-ready values."""
        return {
            "sequence": self.sequence,
            "task_id": str(self.task_id),
            "task_type": self.task_type,
            "recorded": {**asdict(self.recorded), "valid": self.recorded.valid},
            "new": {**asdict(self.new), "valid": self.new.valid},
            "same_class": self.same_class,
            "new_result": self.result,
        }


def result_class(result: dict[str, Any]) -> str:
    """The kind of answer a result holds: a review's verdict, or a text."""
    review = result.get("review")
    if isinstance(review, dict):
        return f"review:{review.get('verdict')}"
    return "text" if "text" in result else "other"


async def assignments(
    store: EventStore,
    capabilities: Collection[str],
    *,
    since_sequence: int = 1,
    since_time: datetime | None = None,
    limit: int | None = None,
) -> AsyncIterator[tuple[RecordedEvent, Task]]:
    """Recorded assignments of tasks of these types, oldest first, with each task's state."""
    found = 0
    async for assigned in store.read(from_sequence=since_sequence, subject_filter=ASSIGNED):
        if since_time is not None and assigned.envelope.occurred_at < since_time:
            continue
        task = (await load_aggregate(store, TASK, assigned.envelope.aggregate_id)).state
        if not isinstance(task, Task) or task.task_type not in capabilities:
            continue
        yield assigned, task
        found += 1
        if limit is not None and found >= limit:
            return


async def recorded_run(store: EventStore, assigned: RecordedEvent, task: Task) -> RunOutcome | None:
    """How the run this assignment caused ended, from the log; None if it never ended."""
    cause = str(assigned.envelope.event_id)
    ending: EventEnvelope | None = None
    async for event in store.aggregate_events(
        "task", task.task_id, after_sequence=assigned.sequence
    ):
        envelope = event.envelope
        if envelope.causation_id == cause and envelope.event_type in (
            "TaskCompleted",
            "TaskFailed",
        ):
            ending = envelope
            break
    if ending is None:
        return None
    calls = [
        event.envelope.data
        async for event in store.aggregate_events(
            "model_call", call_id_for(assigned.envelope.event_id, task.task_type)
        )
    ]
    call = calls[0] if calls else {}
    if ending.event_type == "TaskCompleted":
        status, kind = "completed", result_class(dict(ending.data.get("result") or {}))  # type: ignore[arg-type]
    else:
        error = ending.data.get("error") or {}
        status, kind = "failed", str(error.get("code") if isinstance(error, dict) else error)
    return RunOutcome(
        status=status,
        result_class=kind,
        model=str(call["model"]) if "model" in call else None,
        latency_ms=float(call["latency_ms"]) if "latency_ms" in call else None,  # type: ignore[arg-type]
        prompt_tokens=int(call.get("prompt_tokens") or 0),  # type: ignore[arg-type]
        completion_tokens=int(call.get("completion_tokens") or 0),  # type: ignore[arg-type]
        calls=len(calls),
    )


class CallLog:
    """Collects the model calls of a new run instead of recording them on the log."""

    def __init__(self) -> None:
        self.calls: list[RecordModelCall] = []

    async def __call__(self, call: RecordModelCall, cause: EventEnvelope) -> None:
        self.calls.append(call)

    def outcome(self, status: str, kind: str, model: str, elapsed_ms: float) -> RunOutcome:
        """The outcome of the run whose calls were collected since the last `clear`."""
        return RunOutcome(
            status=status,
            result_class=kind,
            model=model,
            latency_ms=round(sum(c.latency_ms for c in self.calls) or elapsed_ms, 3),
            prompt_tokens=sum(c.prompt_tokens for c in self.calls),
            completion_tokens=sum(c.completion_tokens for c in self.calls),
            calls=len(self.calls),
        )

    def clear(self) -> None:
        """Forget the calls of the run before."""
        self.calls.clear()


async def run_again(
    work: Work, calls: CallLog, model: str, assigned: RecordedEvent, task: Task
) -> tuple[RunOutcome, dict[str, Any] | None]:
    """Run `work` on the recorded task as its agent did, with the assignment as the cause."""
    calls.clear()
    started = time.perf_counter()
    try:
        result = await work(task, assigned.envelope)
    except ModelError as error:
        elapsed = (time.perf_counter() - started) * 1000
        return calls.outcome("failed", error.code, model, elapsed), None
    elapsed = (time.perf_counter() - started) * 1000
    return calls.outcome("completed", result_class(result), model, elapsed), result
