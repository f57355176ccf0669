"""Background work (heartbeats, sweeps) and brokers: started when live, stopped for sure.

A plain `task.cancel(); await task` can wait for ever: Python 3.11's `asyncio.wait_for` may
swallow a cancellation that meets the inner future's completion, and a loop around it then goes
on. `stop_task` cancels again until the task has ended, up to a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import structlog
from faststream.nats import NatsBroker
from faststream.types import BrokerMiddleware
from nats.aio.client import Client as NatsClient

from eventstore.connection import server_urls

log = structlog.get_logger(__name__)

STOP_DEADLINE = 5.0
"""Seconds a background loop gets to end once cancelled."""


async def stop_task(task: asyncio.Task[object], timeout: float = STOP_DEADLINE) -> bool:
    """Cancel `task` and wait for it, cancelling again while it swallows cancellation.

    Returns whether it ended within `timeout`; one that did not is logged and left behind.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("background.task_would_not_stop", task=task.get_name(), timeout=timeout)
            return False
        await asyncio.wait({task}, timeout=min(remaining, 0.5))
    if not task.cancelled() and task.exception() is not None:
        log.warning("background.task_failed", task=task.get_name(), error=repr(task.exception()))
    return True


@contextlib.asynccontextmanager
async def repeating(
    name: str, work: Callable[[], Awaitable[object]], *, every: float
) -> AsyncIterator[None]:
    """Run `work` now and then every `every` seconds until the block ends.

    A failing round is logged and the next one comes on time: a server that is down must not
    end a heartbeat or a sweep for good.
    """

    async def loop() -> None:
        while True:
            try:
                await work()
            except Exception as error:
                log.warning(f"{name}.failed", error=repr(error))
            await asyncio.sleep(every)

    running = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        await stop_task(running)


class _HandedBack(logging.Filter):
    """A handler cancelled at the drain deadline is not a failure: its event was handed back
    (a NAK) and another replica, or this one after a restart, takes it. One line, no traceback:
    a Ctrl-C must not look like a crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            record.exc_info = record.exc_text = None
            record.msg = f"{record.getMessage()} (stopped at the drain deadline; handed back)"
            record.args = ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


BROKER_LOGGER = "sutazai.broker"
"""FastStream's logger for our brokers: through the process's structured logging."""


def broker_logger() -> logging.Logger:
    """The brokers' logger, with handed-back events said in one line."""
    logger = logging.getLogger(BROKER_LOGGER)
    if not any(isinstance(f, _HandedBack) for f in logger.filters):
        logger.addFilter(_HandedBack())
    # FastStream says at INFO what each subscriber task does as it stops: noise in `sutazai up`
    # unless the process logs at DEBUG. Its warnings and errors go through as they are.
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    return logger


def nats_broker(
    url: str,
    *,
    drain_timeout: float,
    middlewares: Sequence[BrokerMiddleware[Any, Any]] = (),
) -> NatsBroker:
    """A FastStream broker on every server of `url` (a cluster's too) whose stop is bounded: a
    handler in flight gets `drain_timeout` seconds, and so does draining the connection.
    Requests log at DEBUG (INFO for each would drown the log)."""
    return NatsBroker(
        server_urls(url),
        logger=broker_logger(),
        log_level=logging.DEBUG,
        graceful_timeout=drain_timeout,
        drain_timeout=max(1, math.ceil(drain_timeout)),
        middlewares=tuple(middlewares),
    )


async def start_broker(broker: NatsBroker) -> None:
    """Start `broker` and return once the server knows every subscription it made.

    A round trip after subscribing: once the PONG is back, the server has processed every SUB
    before it, so a request that follows cannot meet "no responders".
    """
    await broker.start()
    await broker.connection.flush()


async def stop_broker(broker: NatsBroker, *, drain_timeout: float) -> None:
    """Stop `broker` for sure, within 2 x `drain_timeout` + 1 s: no new message is taken, the one
    in hand gets `drain_timeout` (then is cancelled), the connection is drained, and closed if
    it will not drain (a server that stopped answering)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * drain_timeout + 1
    try:
        client: NatsClient | None = broker.connection
    except Exception:  # never started
        client = None
    try:
        # Its own bounds are the graceful wait plus the drain; this one covers a hang in between.
        await asyncio.wait_for(broker.stop(), 2 * drain_timeout)
    except Exception as error:
        log.warning("shutdown.broker_stop_failed", error=repr(error))
    if client is not None and not client.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), max(0.1, deadline - loop.time()))
