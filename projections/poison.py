"""A projector that met an event it cannot apply (parked by `eventstore.dlq`) and stopped."""

from __future__ import annotations


class ProjectorStopped(RuntimeError):
    """A projector met an event it cannot apply and stopped (its policy is to stop)."""

    def __init__(self, projector: str, sequence: int, error: BaseException) -> None:
        super().__init__(f"{projector} stopped at sequence {sequence}: {error!r}")
        self.projector = projector
        self.sequence = sequence
        self.error = error
