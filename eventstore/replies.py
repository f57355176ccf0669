"""One wildcard inbox for the replies to many requests that each expect several messages."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

Collector = Callable[[Msg], Awaitable[None]]


class ReplyInboxes:
    """Inboxes under one subscription (`<prefix>.*`), each routed to its own collector.

    A batch direct get is answered by several messages, which nats-py's request multiplexer
    (one future per request) cannot take. Subscribing an inbox per read cost a SUB and an UNSUB
    per aggregate load, and the server's subscription cache is reset on each of them. The one
    subscription is made on first use and outlives reconnects (nats-py resubscribes it).
    """

    def __init__(self, client: NatsClient) -> None:
        self._client = client
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._ready = asyncio.Lock()
        self._tokens = itertools.count()
        self._collectors: dict[str, Collector] = {}

    async def open(self, collect: Collector) -> str:
        """A fresh inbox whose messages go to `collect` until `close`."""
        if self._subscription is None:
            async with self._ready:
                if self._subscription is None:
                    self._prefix = self._client.new_inbox()
                    self._subscription = await self._client.subscribe(
                        f"{self._prefix}.*", cb=self._route
                    )
        token = str(next(self._tokens))
        self._collectors[token] = collect
        return f"{self._prefix}.{token}"

    def close(self, inbox: str) -> None:
        """Stop routing `inbox`: late replies to it are dropped."""
        self._collectors.pop(inbox.rpartition(".")[2], None)

    async def _route(self, message: Msg) -> None:
        collect = self._collectors.get(message.subject.rpartition(".")[2])
        if collect is not None:
            await collect(message)
