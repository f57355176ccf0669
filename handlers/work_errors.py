"""How work on a task fails: a typed error whose `code` goes on the failed task."""

from __future__ import annotations


class WorkError(Exception):
    """Work that produced no result. `code` is stable (it ends up on the task), `retryable`
    says whether the task may be tried again later."""

    code = "WORK_FAILED"
    retryable = True

    def __init__(
        self, message: str = "", *, code: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
