"""Typed errors of the embedded server stack."""

from __future__ import annotations


class ServerError(Exception):
    """Base of every error about a server the platform starts or reaches."""

    def __init__(self, server: str, message: str) -> None:
        super().__init__(message)
        self.server = server


class ServerStartError(ServerError):
    """A server did not come up: it exited or missed its deadline. The message names it."""

    def __init__(self, server: str, message: str, *, log_tail: str = "") -> None:
        super().__init__(server, message)
        self.log_tail = log_tail

    def __str__(self) -> str:
        base = super().__str__()
        if not self.log_tail:
            return base
        return f"{base}\n--- last lines of its log ---\n{self.log_tail}"


class ServerSetupError(ServerError):
    """A server's data or binary is not usable (missing package, unreadable data dir)."""
