"""The store's NATS connection, watched: calls in flight fail the moment it drops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import nats
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient

from eventstore.errors import StoreUnavailable

log = structlog.get_logger(__name__)


class ConnectionWatch:
    """Cuts short every store call in flight when NATS goes away.

    nats-py keeps an in-flight request waiting through a reconnect, so without this a command
    would hang for its whole timeout while the server is down. Watched calls register their
    task; losing the connection cancels them, and the cancellation becomes StoreUnavailable.
    (Cheaper per call than a timer of our own: a set insertion, no new task or timer.)
    """

    def __init__(self) -> None:
        self._waiting: set[asyncio.Task[object]] = set()
        self._cut: set[asyncio.Task[object]] = set()

    async def lost(self) -> None:
        """The connection dropped: cut every watched call short (nats-py's `disconnected_cb`)."""
        for task in list(self._waiting):
            self._cut.add(task)
            task.cancel(msg="NATS connection lost")

    @contextlib.contextmanager
    def bounded(self, what: str) -> Iterator[None]:
        """Run a call that nats-py bounds by its timeout; end it early if the connection drops."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if task not in self._cut:
                raise  # somebody else's cancellation: let it through
            task.uncancel()
            raise StoreUnavailable(f"the connection to NATS dropped during {what}") from None
        except nats.errors.TimeoutError as error:
            raise StoreUnavailable(f"NATS did not answer {what} in time") from error
        finally:
            self._waiting.discard(task)
            self._cut.discard(task)


def server_urls(url: str) -> list[str]:
    """The servers of a NATS URL setting: one URL, or several separated by commas (a cluster)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect_watched(
    url: str, *, name: str, watch: ConnectionWatch, timeout: float
) -> NatsClient:
    """A NATS client that reconnects forever and tells `watch` whenever it loses the server.

    Reconnecting forever would also make the first connect wait forever for a server that is
    not there: that one is bounded by `timeout`, then StoreUnavailable.
    """

    async def quiet(error: Exception) -> None:
        # nats-py would log each refused attempt with a traceback; the outcome is what counts.
        log.debug("nats.client_error", url=url, error=repr(error))

    try:
        return await asyncio.wait_for(
            nats.connect(
                server_urls(url),
                name=name,
                disconnected_cb=watch.lost,
                error_cb=quiet,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
            ),
            timeout=timeout,
        )
    except (TimeoutError, OSError, nats.errors.Error) as error:
        raise StoreUnavailable(f"NATS at {url} does not answer: {error!r}") from error
