"""Commands over NATS request/reply: `sutazai.cmd.<CommandName>` answered with a typed reply."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from faststream.nats import NatsBroker, NatsRouter
from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from commands.dispatch import CommandDispatcher, validation_refusal
from domain.aggregates import COMMANDS
from handlers.background import nats_broker, start_broker, stop_broker
from schemas.commands import CommandRequest, command_subject

QUEUE = "sutazai-commands"


@contextlib.asynccontextmanager
async def command_endpoint(
    nats_url: str, dispatcher: CommandDispatcher, *, drain_timeout: float = 5.0
) -> AsyncIterator[NatsBroker]:
    """Answer `sutazai.cmd.<CommandName>` until the block ends.

    Entered once the server knows every subscription. On exit no new request is taken; those
    in flight get `drain_timeout` seconds to be answered, then are cancelled: a command is one
    atomic append, so a cancelled one either happened (and a retry is told `duplicate`) or not.
    """
    broker = nats_broker(nats_url, drain_timeout=drain_timeout)
    broker.include_router(command_router(dispatcher))
    try:
        await start_broker(broker)
        yield broker
    finally:
        await stop_broker(broker, drain_timeout=drain_timeout)


def command_router(dispatcher: CommandDispatcher) -> NatsRouter:
    """One subscriber per command, in a queue group so every replica shares the load."""
    router = NatsRouter()
    for name in COMMANDS:
        router.subscriber(command_subject(name), queue=QUEUE)(_handler(dispatcher, name))
    return router


def _claimed_command_id(raw: bytes) -> str | None:
    """The command id of a request that failed validation, when one can still be read."""
    try:
        value = json.loads(raw).get("command_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _handler(dispatcher: CommandDispatcher, name: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    # The raw message, not a decoded body: a request that is not even JSON still gets a
    # typed refusal instead of silence.
    async def handle(body: Any, message: NatsMessage) -> dict[str, Any]:
        try:
            request = CommandRequest.model_validate_json(message.body)
        except ValidationError as error:
            refusal = validation_refusal(_claimed_command_id(message.body), error)
            answer: dict[str, Any] = refusal.model_dump(mode="json")
            return answer
        reply = await dispatcher.dispatch(name, request)
        answer = reply.model_dump(mode="json")
        return answer

    handle.__name__ = f"handle_{name}"
    handle.__doc__ = f"Run {name}; reply CommandAccepted or CommandRefused."
    return handle
