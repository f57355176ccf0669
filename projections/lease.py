"""One process at a time per projector: a lease in the `sutazai_leases` KV bucket.

Any number of processes may run the same projector (`sutazai projections run` on several hosts);
the one holding the lease applies events, the others wait. The holder renews its entry (a
compare-and-set on the revision it wrote) every third of the lease; the bucket's TTL drops an
entry that is not renewed, so when the holder dies a waiting process takes over within about
one lease. Correctness does not rest on the lease: every batch also checks the checkpoint it
started from, so two holders for a moment (a paused process waking up) cannot apply twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LeaseTerms:
    """How long a lease lasts unless renewed, and who is asking for it."""

    seconds: float
    holder: str
    """Names this process in the entry (host and pid), for people reading the bucket."""

    @property
    def renew_every(self) -> float:
        """Renew three times a lease: one late renewal does not lose it."""
        return self.seconds / 3


class LeaseLost(Exception):
    """Another process holds the lease now: stop applying."""


class Lease:
    """The lease on one key, for one process."""

    def __init__(self, bucket: KeyValue, key: str, terms: LeaseTerms) -> None:
        self._bucket = bucket
        self._key = key
        self._terms = terms
        self._revision: int | None = None

    async def acquire(self, stop: asyncio.Event, *, waiting: asyncio.Event | None = None) -> bool:
        """Wait until this process holds the lease (True), or until `stop` (False).

        `waiting` is set if another process holds it: a standby is as ready as it can be.
        """
        waited = False
        while not stop.is_set():
            try:
                self._revision = await self._bucket.create(self._key, self._terms.holder.encode())
            except KeyWrongLastSequenceError:
                if not waited:
                    log.info("lease.waiting", key=self._key, holder=self._terms.holder)
                    waited = True
                    if waiting is not None:
                        waiting.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._terms.renew_every)
                continue
            log.info("lease.acquired", key=self._key, holder=self._terms.holder)
            return True
        return False

    async def renew(self) -> None:
        """Extend the lease; LeaseLost if another process took it meanwhile."""
        try:
            self._revision = await self._bucket.update(
                self._key, self._terms.holder.encode(), last=self._revision
            )
        except (KeyWrongLastSequenceError, KeyNotFoundError) as error:
            self._revision = None
            raise LeaseLost(self._key) from error

    async def release(self) -> None:
        """Give the lease up at once (a clean stop), so a waiting process need not wait it out."""
        if self._revision is None:
            return
        revision, self._revision = self._revision, None
        with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError):
            await self._bucket.delete(self._key, last=revision)
        log.info("lease.released", key=self._key, holder=self._terms.holder)


@contextlib.asynccontextmanager
async def held(
    lease: Lease, terms: LeaseTerms, stop: asyncio.Event
) -> AsyncIterator[asyncio.Event]:
    """Hold the lease for the block, renewing it; yields an event set when the block must end
    (the lease was lost, or `stop`). Released on exit, even when cancelled (bounded)."""
    end = asyncio.Event()

    async def keep() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), terms.renew_every)
            if stop.is_set():
                end.set()
                return
            try:
                await lease.renew()
            except LeaseLost:
                log.warning("lease.lost", holder=terms.holder)
                end.set()
                return
            except Exception as error:  # a server hiccup: try again at the next turn
                log.warning("lease.renew_failed", error=repr(error))

    keeper = asyncio.create_task(keep())
    try:
        yield end
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        # Shielded and bounded: a cancelled stop still hands the lease on at once.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(lease.release()), terms.renew_every)


Run = Callable[..., Coroutine[Any, Any, None]]
"""A projector's loop: `run(stop, live=...)` applies events until `stop` is set."""


def under_lease(run: Run, bucket: KeyValue, key: str, terms: LeaseTerms) -> Run:
    """`run`, applying only while this process holds the lease on `key`; waiting otherwise."""

    async def leased(stop: asyncio.Event, *, live: asyncio.Event | None = None) -> None:
        lease = Lease(bucket, key, terms)
        while not stop.is_set():
            if not await lease.acquire(stop, waiting=live):
                return
            async with held(lease, terms, stop) as end:
                await run(end, live=live)

    return leased
