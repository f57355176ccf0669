"""Rebuild a read model from the log beside the live one and switch atomically; verify one.

Rebuild is blue/green: the next tables (`<table>__next`) are filled from sequence 1 while the
live ones keep answering and the live projector keeps applying; then, in one transaction that
holds the live checkpoint, the tables are swapped by rename and the checkpoint moves to where
the rebuild got. The old tables are dropped after.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import uuid4

import asyncpg
import structlog

from eventstore.store import EventStore
from projections.bulk import BuildProgress
from projections.runtime import Connection, ProjectionRunner, Projector, checkpoint_of
from projections.streaming import stream_into, streams

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TableCheck:
    """One table of a verification: its rows and content hash, live and rebuilt."""

    table: str
    live_rows: int
    rebuilt_rows: int
    live_hash: str
    rebuilt_hash: str

    @property
    def matches(self) -> bool:
        """Whether the rebuilt table equals the live one."""
        return (self.live_rows, self.live_hash) == (self.rebuilt_rows, self.rebuilt_hash)


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did."""

    projector: str
    version: int
    events: int
    sequence: int
    seconds: float


async def _copy_shape(connection: Connection, targets: Mapping[str, str]) -> None:
    for live, other in targets.items():
        await connection.execute(f"DROP TABLE IF EXISTS {other}")
        await connection.execute(f"CREATE TABLE {other} (LIKE {live} INCLUDING ALL)")


async def build_into(
    store: EventStore,
    pool: asyncpg.Pool,
    projector: Projector,
    checkpoint_name: str,
    *,
    up_to: int | None = None,
    progress: BuildProgress | None = None,
    batch_size: int = 5_000,
) -> int:
    """Apply the log from sequence 1 to `up_to` (default: its end now) with `projector`.

    Returns how many events it applied. A log that keeps growing is not chased: the target is
    fixed when the build starts (the live projector carries on from wherever a rebuild stops).
    """
    await pool.execute("DELETE FROM projection_checkpoints WHERE name = $1", checkpoint_name)
    target = up_to if up_to is not None else await store.last_sequence()
    bulk_insert = getattr(projector, "bulk_insert", None)
    if bulk_insert is None and not streams(projector):
        events = await _continue(
            store,
            pool,
            projector,
            checkpoint_name,
            target=target,
            progress=progress,
            batch_size=batch_size,
        )
    else:
        # Empty tables from sequence 1: fold in memory and COPY, in the checkpoint's transaction.
        async with pool.acquire() as connection, connection.transaction():
            if streams(projector):
                events = await stream_into(
                    store, connection, projector, up_to=target, progress=progress
                )
            else:
                assert bulk_insert is not None  # the other kind went to `_continue`
                events = int(await bulk_insert(store, connection, up_to=target, progress=progress))
            await connection.execute(
                "INSERT INTO projection_checkpoints (name, version, sequence) VALUES ($1, $2, $3)",
                checkpoint_name,
                projector.version,
                target,
            )
    if progress is not None:
        progress(target, target)
    return events


async def _continue(
    store: EventStore,
    pool: asyncpg.Pool,
    projector: Projector,
    checkpoint_name: str,
    *,
    target: int,
    progress: BuildProgress | None,
    batch_size: int,
) -> int:
    """Apply the log up to `target` through a `ProjectionRunner`, a batch at a time."""
    runner = ProjectionRunner(
        store, pool, projector, batch_size=batch_size, checkpoint_name=checkpoint_name
    )
    events = 0
    while moved := await runner.apply_once(up_to=target):
        events += moved
        if progress is not None:
            progress(await checkpoint_of(pool, checkpoint_name), target)
    return events


async def rebuild(
    store: EventStore,
    pool: asyncpg.Pool,
    projector: Projector,
    *,
    progress: BuildProgress | None = None,
) -> RebuildReport:
    """Build the next version beside the live tables, then switch to it atomically."""
    started = time.monotonic()
    targets = {table: f"{table}__next" for table in projector.tables}
    shadow = f"{projector.name}@rebuild"
    async with pool.acquire() as connection:
        await _copy_shape(connection, targets)
    events = await build_into(store, pool, projector.retarget(targets), shadow, progress=progress)
    async with pool.acquire() as connection, connection.transaction():
        # Holding the live checkpoint keeps the live projector out while the tables change.
        await connection.execute(
            "INSERT INTO projection_checkpoints (name, version, sequence) VALUES ($1, $2, 0)"
            " ON CONFLICT (name) DO NOTHING",
            projector.name,
            projector.version,
        )
        live_version = await connection.fetchval(
            "SELECT version FROM projection_checkpoints WHERE name = $1 FOR UPDATE", projector.name
        )
        reached = await checkpoint_of(connection, shadow)
        for table, other in targets.items():
            await connection.execute(f"ALTER TABLE {table} RENAME TO {table}__old")
            await connection.execute(f"ALTER TABLE {other} RENAME TO {table}")
        version = int(live_version) + 1
        await connection.execute(
            "UPDATE projection_checkpoints SET sequence = $2, version = $3, status = 'running',"
            " error = NULL, error_sequence = NULL, updated_at = now() WHERE name = $1",
            projector.name,
            reached,
            version,
        )
        await connection.execute("DELETE FROM projection_checkpoints WHERE name = $1", shadow)
    async with pool.acquire() as connection:
        for table in targets:
            await connection.execute(f"DROP TABLE {table}__old CASCADE")
    report = RebuildReport(projector.name, version, events, reached, time.monotonic() - started)
    log.info("projection.rebuilt", **report.__dict__)
    return report


async def _checksums(
    connection: Connection, tables: Mapping[str, str]
) -> dict[str, tuple[int, str]]:
    found = {}
    for name, table in tables.items():
        row = await connection.fetchrow(
            "SELECT count(*) AS rows, md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS hash"
            f" FROM (SELECT md5(t::text) AS h FROM {table} t) hashed"
        )
        assert row is not None  # an aggregate always yields one row
        found[name] = (int(row["rows"]), str(row["hash"]))
    return found


async def verify(
    store: EventStore,
    pool: asyncpg.Pool,
    projector: Projector,
    *,
    progress: BuildProgress | None = None,
) -> list[TableCheck]:
    """Rebuild into a scratch schema up to the live checkpoint and compare every table."""
    schema = f"verify_{uuid4().hex[:12]}"
    targets = {table: f"{schema}.{table}" for table in projector.tables}
    scratch = f"{projector.name}@verify-{schema}"
    async with pool.acquire() as connection:
        # One snapshot for the live checkpoint and the live tables: they were written together.
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            live_at = await checkpoint_of(connection, projector.name)
            live = await _checksums(connection, {t: t for t in projector.tables})
        await connection.execute(f"CREATE SCHEMA {schema}")
        await _copy_shape(connection, targets)
    try:
        await build_into(
            store, pool, projector.retarget(targets), scratch, up_to=live_at, progress=progress
        )
        async with pool.acquire() as connection:
            rebuilt = await _checksums(connection, targets)
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.execute("DELETE FROM projection_checkpoints WHERE name = $1", scratch)
    return [
        TableCheck(table, live[table][0], rebuilt[table][0], live[table][1], rebuilt[table][1])
        for table in projector.tables
    ]
