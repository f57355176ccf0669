"""`sutazai projections …`: the read models."""

from __future__ import annotations

import asyncio

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
    """Each projector's checkpoint, how far behind the log it is, and when it last moved."""
    settings = load_settings()
    stack = Stack(settings)

    async def gather() -> list[tuple[str, int, int, object]]:
        async with (
            connect_store(settings, stack) as commands,
            connect_read_side(settings, stack) as pool,
        ):
            last = await commands.bus.store.last_sequence()
            rows = {
                row["name"]: row
                for row in await pool.fetch(
                    "SELECT name, sequence, updated_at FROM projection_checkpoints"
                )
            }
            return [
                (
                    p.name,
                    int(rows[p.name]["sequence"]) if p.name in rows else 0,
                    last,
                    rows[p.name]["updated_at"] if p.name in rows else None,
                )
                for p in PROJECTORS
            ]

    try:
        found = asyncio.run(gather())
    except (OSError, nats.errors.NoServersError) as error:
        errors.print(f"[red]The platform does not answer ({escape(repr(error))}). Is it up?[/]")
        raise typer.Exit(2) from error
    table = Table(title="Projections")
    for column in ("projector", "checkpoint", "log end", "behind", "last applied"):
        table.add_column(column)
    for name, checkpoint, last, updated in found:
        table.add_row(name, str(checkpoint), str(last), str(last - checkpoint), str(updated or "-"))
    console.print(table)
