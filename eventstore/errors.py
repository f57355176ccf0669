"""Typed errors of the event store."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of every event store error."""


class ConcurrencyConflict(EventStoreError):
    """Another writer appended to the aggregate since it was loaded."""

    def __init__(self, subject_filter: str, expected_sequence: int, detail: str = "") -> None:
        super().__init__(
            f"{subject_filter} moved past sequence {expected_sequence}"
            + (f" ({detail})" if detail else "")
        )
        self.subject_filter = subject_filter
        self.expected_sequence = expected_sequence


class StoreUnavailable(EventStoreError):
    """NATS did not answer in time, or the connection is down. Nothing was acknowledged."""


class EventTooLarge(EventStoreError):
    """An event does not fit in one NATS message."""

    def __init__(self, event_type: str, size: int, limit: int) -> None:
        super().__init__(f"{event_type} is {size} bytes; the limit is {limit}")
        self.event_type = event_type
        self.size = size
        self.limit = limit


class StreamConfigConflict(EventStoreError):
    """A stream exists with a configuration that cannot be changed in place."""


class AppendRejected(EventStoreError):
    """The server refused an append for a reason other than concurrency."""

    def __init__(self, err_code: int, description: str) -> None:
        super().__init__(f"append rejected ({err_code}): {description}")
        self.err_code = err_code
        self.description = description
