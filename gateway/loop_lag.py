"""How late the gateway's event loop runs what is due: the queue no in-flight count can see.

Past its capacity a gateway's requests wait before any of its code runs: in the socket, in
uvicorn's parsing, in the event loop's queue of ready callbacks. `bench/e2e.py` at twice its
capacity saw half a second there while the in-flight bound (`GraphQLGate`) held just 16
requests. A ticker that asks to wake every `interval` and notes how late it woke measures that
queue directly; the gate refuses new requests while it is longer than the bound, so the
requests it accepts are not answered seconds late, and the CPU refusals save goes to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class LoopLag:
    """The event loop's lateness, sampled every `interval` seconds and smoothed.

    `seconds` is a moving average (each tick weighs `weight`): one slow callback, a password
    hashed on the loop say, does not refuse the requests behind it; a queue that stays does.
    """

    def __init__(self, interval: float = 0.01, weight: float = 0.2) -> None:
        self.interval = interval
        self.weight = weight
        self.seconds = 0.0
        """How late the loop runs, on average over the last ticks (0 before `start`)."""
        self._due = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sampling, on the running loop."""
        if self._task is None:
            self._due = time.monotonic() + self.interval
            self._task = asyncio.create_task(self._tick(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.seconds = 0.0

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            late = max(0.0, now - self._due)
            self.seconds += self.weight * (late - self.seconds)
            self._due = now + self.interval
