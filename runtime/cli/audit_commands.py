"""`sutazai audit …`: audit questions answered from the log."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import typer
from rich.markup import escape
from rich.table import Table

from commands.dispatch import CommandDispatcher
from projections import audit
from runtime.cli.base import (
    audit_app,
    console,
    errors,
    run_with_commands,
)


@audit_app.command("history")
def audit_history(
    aggregate: Annotated[str, typer.Argument(help="user, agent, task, document, …")],
    aggregate_id: Annotated[UUID, typer.Argument(help="The aggregate's id.")],
) -> None:
    """Every change of an aggregate: version, when, who, why, command and correlation."""

    async def show(commands: CommandDispatcher) -> None:
        changes = await audit.history(commands.bus.store, aggregate, aggregate_id)
        if not changes:
            errors.print(f"[red]No {escape(aggregate)} {aggregate_id} in the log[/]")
            raise typer.Exit(1)
        table = Table(title=f"{aggregate} {aggregate_id}")
        for column in ("v", "seq", "when (UTC)", "event", "who", "why", "command", "correlation"):
            table.add_column(column, overflow="fold")
        for change in changes:
            table.add_row(
                str(change.version),
                str(change.sequence),
                f"{change.occurred_at:%Y-%m-%d %H:%M:%S}",
                change.event_type,
                escape(f"{change.actor.kind}:{change.actor.id}"),
                escape(change.reason or ""),
                escape(change.command_id),
                escape(change.correlation_id),
            )
        console.print(table)

    _audit(show)


@audit_app.command("show")
def audit_show(
    aggregate: Annotated[str, typer.Argument(help="user, agent, task, document, …")],
    aggregate_id: Annotated[UUID, typer.Argument(help="The aggregate's id.")],
    at_version: Annotated[int | None, typer.Option(min=1, help="State at this version.")] = None,
    at_time: Annotated[
        datetime | None, typer.Option(help="State at this time (UTC unless an offset is given).")
    ] = None,
) -> None:
    """An aggregate's state folded from the log, now or as it was."""
    if at_version is not None and at_time is not None:
        errors.print("[red]Give --at-version or --at-time, not both.[/]")
        raise typer.Exit(2)
    when = at_time.replace(tzinfo=at_time.tzinfo or UTC) if at_time else None

    async def show(commands: CommandDispatcher) -> None:
        past = await audit.state_at(
            commands.bus.store, aggregate, aggregate_id, version=at_version, at=when
        )
        if past.state is None:
            errors.print(f"[red]No {escape(aggregate)} {aggregate_id} at that point[/]")
            raise typer.Exit(1)
        when_then = f"{past.occurred_at:%Y-%m-%d %H:%M:%S} UTC"
        title = f"{aggregate} {aggregate_id} at version {past.version} ({when_then})"
        table = Table(title=title, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for field, value in past.state.model_dump(mode="json").items():
            shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
            table.add_row(field, escape(shown))
        console.print(table)

    _audit(show)


def _audit(work: Callable[[CommandDispatcher], Awaitable[None]]) -> None:
    try:
        run_with_commands(work)
    except audit.UnknownAggregateType as error:
        errors.print(f"[red]{escape(str(error))}[/]")
        raise typer.Exit(2) from error
