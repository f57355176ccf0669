"""Typed domain errors: a command either yields events or raises one of these."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.model import State


class DomainError(Exception):
    """A command the domain refuses. `code` is stable and safe to show to a client.

    An error with details is a dataclass of them (`eq=False`: an exception stays equal only to
    itself) that words its message in `describe`.
    """

    code = "DOMAIN_ERROR"

    def __post_init__(self) -> None:
        # Run by a dataclass subclass's `__init__`: the message is `str(error)` and `args`.
        super().__init__(self.describe())

    def describe(self) -> str:
        """The message, from the error's details."""
        raise NotImplementedError


@dataclass(eq=False)
class AggregateNotFound(DomainError):
    """The command targets an aggregate that has no events."""

    code = "NOT_FOUND"

    aggregate: str
    aggregate_id: UUID

    def describe(self) -> str:
        return f"{self.aggregate} {self.aggregate_id} does not exist"


@dataclass(eq=False)
class AggregateAlreadyExists(DomainError):
    """A creation command targets an id that already has events."""

    code = "ALREADY_EXISTS"

    aggregate: str
    aggregate_id: UUID

    def describe(self) -> str:
        return f"{self.aggregate} {self.aggregate_id} already exists"


def require_new(state: object | None, aggregate: str, aggregate_id: UUID) -> None:
    """Nothing, or AggregateAlreadyExists when a creation targets an id that has events."""
    if state is not None:
        raise AggregateAlreadyExists(aggregate, aggregate_id)


def require_existing(state: State | None, aggregate: str, aggregate_id: UUID) -> State:
    """The aggregate's state, or AggregateNotFound when the id has no events."""
    if state is None:
        raise AggregateNotFound(aggregate, aggregate_id)
    return state


@dataclass(eq=False)
class IllegalTransition(DomainError):
    """The aggregate's current status does not allow the command."""

    code = "ILLEGAL_TRANSITION"

    aggregate: str
    aggregate_id: UUID
    status: str
    action: str

    def describe(self) -> str:
        return f"cannot {self.action} {self.aggregate} {self.aggregate_id}: it is {self.status}"


@dataclass(eq=False)
class TaskNotRetryable(DomainError):
    """The task failed with an error marked not retryable."""

    code = "NOT_RETRYABLE"

    task_id: UUID
    error_code: str

    def describe(self) -> str:
        return f"task {self.task_id} failed with {self.error_code}, which is not retryable"


@dataclass(eq=False)
class RetryLimitReached(DomainError):
    """The task has used every attempt it was allowed."""

    code = "RETRY_LIMIT_REACHED"

    task_id: UUID
    attempts: int

    def describe(self) -> str:
        return f"task {self.task_id} has used all {self.attempts} attempts"


@dataclass(eq=False)
class UnknownSubtask(DomainError):
    """A command names a subtask that is not attached to the task."""

    code = "UNKNOWN_SUBTASK"

    task_id: UUID
    subtask_id: UUID

    def describe(self) -> str:
        return f"task {self.task_id} has no subtask {self.subtask_id}"


@dataclass(eq=False)
class UnknownMessage(DomainError):
    """A reply to a message the conversation does not hold."""

    code = "NOT_FOUND"

    conversation_id: UUID
    message_id: UUID

    def describe(self) -> str:
        return f"conversation {self.conversation_id} has no message {self.message_id}"


@dataclass(eq=False)
class InvalidField(DomainError):
    """One field of a command's payload is not acceptable."""

    code = "VALIDATION"

    field: str
    message: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(eq=False)
class PayloadTooLarge(DomainError):
    """A payload or content is over its configured limit."""

    code = "TOO_LARGE"

    field: str
    size: int
    limit: int

    def describe(self) -> str:
        return f"{self.field} is {self.size} bytes; the limit is {self.limit}"


@dataclass(eq=False)
class ValueTaken(DomainError):
    """Another aggregate already holds this unique value."""

    code = "ALREADY_EXISTS"

    kind: str
    value: str

    def describe(self) -> str:
        return f"{self.kind.replace('_', ' ')} {self.value!r} is already taken"
