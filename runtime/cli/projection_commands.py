"""`sutazai projections …`: the read models."""

from __future__ import annotations

import asyncio

import asyncpg
import nats.errors
import typer
from rich.markup import escape
from rich.table import Table

from runtime.bootstrap import (
    PROJECTORS,
    connect_read_side,
    connect_store,
)
from runtime.cli.base import (
    console,
    errors,
    load_settings,
    projections_app,
)
from runtime.stack import Stack


@projections_app.command("status")
def projections_status() -> None:
    """Each projector's checkpoint, how far behind the log it is, its state and last error."""
    settings = load_settings()
    stack = Stack(settings)

    async def gather() -> tuple[int, dict[str, asyncpg.Record]]:
        async with (
            connect_store(settings, stack) as commands,
            connect_read_side(settings, stack) as pool,
        ):
            last = await commands.bus.store.last_sequence()
            rows = await pool.fetch(
                "SELECT name, sequence, updated_at, status, error, error_sequence"
                " FROM projection_checkpoints"
            )
            return last, {row["name"]: row for row in rows}

    try:
        last, rows = asyncio.run(gather())
    except (OSError, nats.errors.NoServersError) as error:
        errors.print(f"[red]The platform does not answer ({escape(repr(error))}). Is it up?[/]")
        raise typer.Exit(2) from error
    table = Table(title=f"Projections (log end: sequence {last})")
    for column in ("projector", "checkpoint", "behind", "state", "last applied", "last error"):
        table.add_column(column, overflow="fold")
    for projector in PROJECTORS:
        row = rows.get(projector.name)
        checkpoint = int(row["sequence"]) if row else 0
        state = row["status"] if row else "not started"
        problem = f"at {row['error_sequence']}: {row['error']}" if row and row["error"] else ""
        table.add_row(
            projector.name,
            str(checkpoint),
            str(last - checkpoint),
            "[red]stopped[/]" if state == "stopped" else state,
            f"{row['updated_at']:%Y-%m-%d %H:%M:%S}" if row else "-",
            escape(problem),
        )
    console.print(table)
