"""Run a Postgres projector: read the log from its checkpoint, apply in batches, exactly once.

Each batch is applied in one transaction together with the new checkpoint, after re-reading
the checkpoint under a row lock: events at or below it are skipped. A crash at any point leaves
either the whole batch and its checkpoint, or neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Protocol

import asyncpg
import structlog

from eventstore.errors import StoreUnavailable
from eventstore.store import EventStore
from schemas.envelope import RecordedEvent

log = structlog.get_logger(__name__)


Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A connection of its own or one lent by the pool."""


class Projector(Protocol):
    """A read model fed by events. `apply_batch` runs inside the batch's transaction."""

    name: str
    version: int
    subject_filter: str

    async def apply_batch(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        """Apply events (all above the checkpoint, in stream order)."""
        ...


class ProjectionLagging(TimeoutError):
    """A projector did not reach a sequence in time."""


async def checkpoint_of(connection: Connection | asyncpg.Pool, name: str) -> int:
    """The last stream sequence a projector applied (0 before its first)."""
    value = await connection.fetchval(
        "SELECT sequence FROM projection_checkpoints WHERE name = $1", name
    )
    return int(value or 0)


async def wait_for_sequence(
    pool: asyncpg.Pool, name: str, sequence: int, *, timeout: float = 5.0
) -> None:
    """Read-your-writes: return once the projector has applied `sequence`, or fail at timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while await checkpoint_of(pool, name) < sequence:
        if time.monotonic() >= deadline:
            raise ProjectionLagging(f"{name} has not reached sequence {sequence} in {timeout}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


class ProjectionRunner:
    """Feeds one projector from the event store, in batches, from its checkpoint on."""

    def __init__(
        self,
        store: EventStore,
        pool: asyncpg.Pool,
        projector: Projector,
        *,
        batch_size: int = 500,
        idle_poll: float = 1.0,
    ) -> None:
        self.store = store
        self.pool = pool
        self.projector = projector
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self._doorbell = asyncio.Event()

    async def apply_once(self) -> int:
        """Read and apply one batch; returns how many events it applied (0: caught up)."""
        name = self.projector.name
        start = await checkpoint_of(self.pool, name)
        batch = [
            event
            async for event in self.store.read(
                from_sequence=start + 1,
                subject_filter=self.projector.subject_filter,
                limit=self.batch_size,
            )
        ]
        if not batch:
            return 0
        async with self.pool.acquire() as connection, connection.transaction():
            # A row to lock even before the first batch, so that two runners serialise here.
            await connection.execute(
                "INSERT INTO projection_checkpoints (name, version, sequence) VALUES ($1, $2, 0)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                self.projector.version,
            )
            current = await connection.fetchval(
                "SELECT sequence FROM projection_checkpoints WHERE name = $1 FOR UPDATE", name
            )
            fresh = [event for event in batch if event.sequence > (current or 0)]
            if not fresh:
                return 0
            await self.projector.apply_batch(connection, fresh)
            await connection.execute(
                "INSERT INTO projection_checkpoints (name, version, sequence) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE"
                " SET sequence = EXCLUDED.sequence, version = EXCLUDED.version, updated_at = now()",
                name,
                self.projector.version,
                fresh[-1].sequence,
            )
        return len(fresh)

    async def catch_up(self) -> int:
        """Apply batches until the log has nothing more; returns the checkpoint."""
        while await self.apply_once():
            pass
        return await checkpoint_of(self.pool, self.projector.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply until `stop` is set; wake on new events, survive store and database outages."""
        subscription = await self.store.client.subscribe(
            self.projector.subject_filter, cb=self._ring
        )
        try:
            while not stop.is_set():
                # Cleared before reading, so an event that lands during the read rings again.
                self._doorbell.clear()
                try:
                    if await self.apply_once():
                        continue
                except (StoreUnavailable, OSError, asyncpg.PostgresConnectionError) as error:
                    log.warning(
                        "projection.retrying", projector=self.projector.name, error=repr(error)
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait(stop), timeout=self.idle_poll)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _ring(self, _message: object) -> None:
        # Every append is also delivered on plain NATS: a cheap "there is something new".
        self._doorbell.set()

    async def _wait(self, stop: asyncio.Event) -> None:
        waits = {asyncio.ensure_future(self._doorbell.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
