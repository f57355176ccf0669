"""Typed domain errors: a command either yields events or raises one of these."""

from __future__ import annotations

from uuid import UUID

from domain.model import State


class DomainError(Exception):
    """A command the domain refuses. `code` is stable and safe to show to a client."""

    code = "DOMAIN_ERROR"


class AggregateNotFound(DomainError):
    """The command targets an aggregate that has no events."""

    code = "NOT_FOUND"

    def __init__(self, aggregate: str, aggregate_id: UUID) -> None:
        super().__init__(f"{aggregate} {aggregate_id} does not exist")
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id


class AggregateAlreadyExists(DomainError):
    """A creation command targets an id that already has events."""

    code = "ALREADY_EXISTS"

    def __init__(self, aggregate: str, aggregate_id: UUID) -> None:
        super().__init__(f"{aggregate} {aggregate_id} already exists")
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id


def require_new(state: object | None, aggregate: str, aggregate_id: UUID) -> None:
    """Nothing, or AggregateAlreadyExists when a creation targets an id that has events."""
    if state is not None:
        raise AggregateAlreadyExists(aggregate, aggregate_id)


def require_existing(state: State | None, aggregate: str, aggregate_id: UUID) -> State:
    """The aggregate's state, or AggregateNotFound when the id has no events."""
    if state is None:
        raise AggregateNotFound(aggregate, aggregate_id)
    return state


class IllegalTransition(DomainError):
    """The aggregate's current status does not allow the command."""

    code = "ILLEGAL_TRANSITION"

    def __init__(self, aggregate: str, aggregate_id: UUID, status: str, action: str) -> None:
        super().__init__(f"cannot {action} {aggregate} {aggregate_id}: it is {status}")
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.status = status
        self.action = action


class TaskNotRetryable(DomainError):
    """The task failed with an error marked not retryable."""

    code = "NOT_RETRYABLE"

    def __init__(self, task_id: UUID, error_code: str) -> None:
        super().__init__(f"task {task_id} failed with {error_code}, which is not retryable")
        self.task_id = task_id
        self.error_code = error_code


class RetryLimitReached(DomainError):
    """The task has used every attempt it was allowed."""

    code = "RETRY_LIMIT_REACHED"

    def __init__(self, task_id: UUID, attempts: int) -> None:
        super().__init__(f"task {task_id} has used all {attempts} attempts")
        self.task_id = task_id
        self.attempts = attempts


class UnknownSubtask(DomainError):
    """A command names a subtask that is not attached to the task."""

    code = "UNKNOWN_SUBTASK"

    def __init__(self, task_id: UUID, subtask_id: UUID) -> None:
        super().__init__(f"task {task_id} has no subtask {subtask_id}")
        self.task_id = task_id
        self.subtask_id = subtask_id
