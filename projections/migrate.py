"""Versioned SQL migrations of the read side, applied in order at start, once each."""

from __future__ import annotations

from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Any constant unique to us: it serialises concurrent starts, so two processes never race.
_LOCK = 0x5A7A_A1_01


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in `projections/migrations/`, in order."""
    found = []
    for entry in resources.files("projections.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply every migration not applied yet; returns the names applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["version"]
            for row in await connection.fetch("SELECT version FROM schema_migrations")
        }
        for version, name, sql in migration_files():
            if version in done:
                continue
            await connection.execute(sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied_now.append(name)
            log.info("migration.applied", migration=name)
    return applied_now
