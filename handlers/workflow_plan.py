"""A workflow's plan and how it settles: the steps the model proposes, the children's ids, and
the command that ends the workflow once its children have ended (pure: no I/O)."""

from __future__ import annotations

from typing import Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from domain.task import CompleteTask, FailTask, Task, TaskError, TaskStatus

_CHILD_IDS = uuid5(NAMESPACE_URL, "https://sutazai.dev/workflow-step")


class Step(BaseModel):
    """One step of a plan: a child task for an agent that can do `task_type`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_type: Literal["code.generate", "code.explain", "code.review", "rag.ask"]
    prompt: str = Field(min_length=1, max_length=300)
    required: bool

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        # The grammar lets through a prompt of spaces; no agent can work from that.
        if not prompt.strip():
            raise ValueError("the prompt is blank")
        return prompt.strip()


class Plan(BaseModel):
    """What the model must answer: 2 to 5 steps, run as child tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[Step, ...] = Field(min_length=2, max_length=5)


def child_task_id(parent_id: UUID, index: int) -> UUID:
    """The id of a workflow's `index`-th child: the same whoever submits it, however often."""
    return uuid5(_CHILD_IDS, f"{parent_id}.{index}")


def ended(task: Task) -> bool:
    """Whether a child is done for good (see the module's notes)."""
    if task.status is TaskStatus.FAILED:
        error = task.error
        return error is None or not error.retryable or task.attempts >= task.max_attempts
    return task.status in (
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED_WITH_FAILURES,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
    )


def outcome(parent: Task, plan: Plan, children: list[Task]) -> CompleteTask | FailTask:
    """The command that settles a workflow whose children have all ended: it fails if a required
    step did not complete; it completes naming the optional steps that did not, if any."""
    steps: list[JsonValue] = []
    failures: list[str] = []
    incomplete: list[UUID] = []
    for index, (step, child) in enumerate(zip(plan.steps, children, strict=True)):
        error = child.error.model_dump(mode="json") if child.error else None
        steps.append(
            {
                "index": index,
                "task_id": str(child.task_id),
                "task_type": step.task_type,
                "prompt": step.prompt,
                "required": step.required,
                "status": child.status.value,
                "result": child.result,
                "error": error,
            }
        )
        if child.status is TaskStatus.COMPLETED:
            continue
        incomplete.append(child.task_id)
        if step.required:
            why = child.error.code if child.error else child.status.value
            failures.append(f"step {index} ({step.task_type}) {child.status.value}: {why}")
    if failures:
        # Not retryable: a retried workflow finds the very same children, ended the same way.
        failed = TaskError(code="SUBTASK_FAILED", message="; ".join(failures), retryable=False)
        return FailTask(task_id=parent.task_id, error=failed)
    return CompleteTask(
        task_id=parent.task_id, result={"steps": steps}, failed_subtask_ids=tuple(incomplete)
    )
