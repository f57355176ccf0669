"""Which parts of a process are live: what `/readyz` reports, `sutazai up` waits on, tests await.

A part is ready once its subscriptions and consumers exist *on the server* (created and flushed),
not merely once the objects exist in this process; it is not ready again from the moment it
starts to drain. The composition root makes one `Readiness` per process and every part of it
(command endpoint, projections, agents, gateway) marks itself on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class PartsNotReady(TimeoutError):
    """Some parts did not become ready in time; names them."""

    def __init__(self, parts: list[str], timeout: float) -> None:
        super().__init__(f"not ready within {timeout:g}s: {', '.join(parts)}")
        self.parts = parts


class Readiness:
    """Parts by name, each starting (not ready), ready, or draining (not ready again)."""

    def __init__(self) -> None:
        self._ready: dict[str, bool] = {}
        self._all_ready = asyncio.Event()

    def expect(self, part: str) -> None:
        """Count `part` in: the process is not ready until it is."""
        self._set(part, False)

    def ready(self, part: str) -> None:
        """`part` is live on its servers."""
        self._set(part, True)

    def draining(self, part: str) -> None:
        """`part` stops taking new work: not ready any more (a balancer stops sending)."""
        if part in self._ready:
            self._set(part, False)

    @contextlib.contextmanager
    def serving(self, part: str) -> Iterator[None]:
        """`part` is ready for the block (entered once it is live) and draining after it."""
        self.ready(part)
        try:
            yield
        finally:
            self.draining(part)

    def not_ready(self) -> list[str]:
        """The parts counted in that are not ready, sorted."""
        return sorted(name for name, ready in self._ready.items() if not ready)

    def parts(self) -> list[str]:
        """Every part counted in, sorted."""
        return sorted(self._ready)

    async def wait(self, timeout: float) -> None:
        """Return once every part counted in is ready; `PartsNotReady` at the deadline."""
        try:
            await asyncio.wait_for(self._all_ready.wait(), timeout=timeout)
        except TimeoutError:
            raise PartsNotReady(self.not_ready(), timeout) from None

    def _set(self, part: str, ready: bool) -> None:
        self._ready[part] = ready
        if all(self._ready.values()):
            self._all_ready.set()
        else:
            self._all_ready.clear()
