"""The one table of GraphQL error codes, and the extension that puts a code on every error.

A client reads `extensions.code` and nothing else to decide what to do; the message is for
people. No stack trace and no unexpected exception's text ever reaches a client.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import asyncpg
import redis.exceptions
import structlog
from graphql.error import GraphQLError
from pydantic import JsonValue
from strawberry.extensions import MaskErrors

from schemas.commands import CommandError

log = structlog.get_logger(__name__)


class ErrorCode(StrEnum):
    """Every code a gateway error can carry."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    VALIDATION = "VALIDATION"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    """A bug of ours: logged with its traceback, shown to the client as this code only."""


COMMAND_CODES: dict[str, ErrorCode] = {
    "VALIDATION": ErrorCode.VALIDATION,
    "TOO_LARGE": ErrorCode.VALIDATION,
    "NOT_FOUND": ErrorCode.NOT_FOUND,
    "FORBIDDEN": ErrorCode.FORBIDDEN,
    "ALREADY_EXISTS": ErrorCode.CONFLICT,
    "ILLEGAL_TRANSITION": ErrorCode.CONFLICT,
    "NOT_RETRYABLE": ErrorCode.CONFLICT,
    "RETRY_LIMIT_REACHED": ErrorCode.CONFLICT,
    "UNKNOWN_SUBTASK": ErrorCode.VALIDATION,
    "CONFLICT": ErrorCode.CONFLICT,
    "UNAVAILABLE": ErrorCode.UNAVAILABLE,
    "REJECTED": ErrorCode.UNAVAILABLE,
}
"""A refused command's code (`schemas.commands.CommandError.code`) as a gateway code."""


class GatewayError(Exception):
    """An error a client may see: a code from the table, a message, optional details."""

    def __init__(self, code: ErrorCode, message: str, **details: JsonValue) -> None:
        super().__init__(message)
        self.code = code
        self.extensions: dict[str, JsonValue] = {"code": code.value, **details}


def unauthenticated(message: str = "sign in first") -> GatewayError:
    """No valid access token came with the request."""
    return GatewayError(ErrorCode.UNAUTHENTICATED, message)


def forbidden(message: str = "your role does not allow this") -> GatewayError:
    """The signed-in user may not do this."""
    return GatewayError(ErrorCode.FORBIDDEN, message)


def refused(error: CommandError) -> GatewayError:
    """A command the platform refused, with the command layer's own code as `reason`."""
    code = COMMAND_CODES.get(error.code, ErrorCode.CONFLICT)
    fields: list[JsonValue] = [{"field": f.field, "message": f.message} for f in error.fields]
    return GatewayError(code, error.message, reason=error.code, fields=fields)


def error_body(code: ErrorCode, message: str) -> dict[str, JsonValue]:
    """A GraphQL response of one error, for answers given before GraphQL runs (429, 413)."""
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code.value}}]}


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""What a server that is down raises under a resolver: the client may retry later."""


def _replaced(error: GraphQLError, code: ErrorCode, message: str) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": code.value},
    )


class TypedErrors(MaskErrors):
    """Gives every error a code: ours keep theirs, GraphQL's own are VALIDATION, bugs INTERNAL."""

    def __init__(self, count: Callable[[str], None] = lambda code: None) -> None:
        super().__init__(should_mask_error=lambda _: True)
        self._count = count

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        coded = self._coded(error)
        self._count(str((coded.extensions or {}).get("code")))
        return coded

    def _coded(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, GatewayError):
            return error
        if original is None or isinstance(original, GraphQLError):
            # Parsing, validation, variable coercion: the request is wrong and the message says
            # how.
            code = (error.extensions or {}).get("code") or ErrorCode.VALIDATION.value
            return GraphQLError(
                error.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={**(error.extensions or {}), "code": code},
            )
        if isinstance(original, asyncpg.DataError):
            return _replaced(error, ErrorCode.VALIDATION, "a value is not acceptable here")
        if isinstance(original, UNAVAILABLE_ERRORS):
            log.warning("gateway.dependency_unavailable", path=error.path, error=repr(original))
            return _replaced(error, ErrorCode.UNAVAILABLE, "a server behind the gateway is down")
        log.error("gateway.unexpected_error", path=error.path, exc_info=original)
        return _replaced(error, ErrorCode.INTERNAL, "internal error; it has been logged")
