"""`sutazai audit …`: audit questions answered from the log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import typer
from rich.markup import escape
from rich.table import Table

from commands.dispatch import CommandDispatcher
from domain.aggregates import AGGREGATES
from projections import audit
from runtime.cli.base import (
    CliError,
    audit_app,
    console,
    run_with_commands,
)


@audit_app.command("history")
def audit_history(
    aggregate: Annotated[str, typer.Argument(help="user, agent, task, document, …")],
    aggregate_id: Annotated[UUID, typer.Argument(help="The aggregate's id.")],
) -> None:
    """Every change of an aggregate: version, when, who, why, command and correlation."""
    _known(aggregate)

    async def show(commands: CommandDispatcher) -> None:
        changes = await audit.history(commands.bus.store, aggregate, aggregate_id)
        if not changes:
            raise CliError(f"No {aggregate} {aggregate_id} in the log.")
        # A section a change, two columns: every field whole within 80 columns.
        table = Table(title=f"{aggregate} {aggregate_id}", show_header=False)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for change in changes:
            table.add_row(
                f"v{change.version}",
                f"[cyan]{change.event_type}[/] at {change.occurred_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"sequence {change.sequence}",
            )
            table.add_row("who", escape(f"{change.actor.kind}:{change.actor.id}"))
            table.add_row("why", escape(change.reason or "-"))
            table.add_row("command", escape(change.command_id))
            table.add_row("correlation", escape(change.correlation_id), end_section=True)
        console.print(table)

    run_with_commands(show)


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
        raise CliError("Give --at-version or --at-time, not both.")
    _known(aggregate)
    when = at_time.replace(tzinfo=at_time.tzinfo or UTC) if at_time else None

    async def show(commands: CommandDispatcher) -> None:
        past = await audit.state_at(
            commands.bus.store, aggregate, aggregate_id, version=at_version, at=when
        )
        if past.state is None:
            raise CliError(f"No {aggregate} {aggregate_id} at that point of the log.")
        when_then = f"{past.occurred_at:%Y-%m-%d %H:%M:%S} UTC"
        title = f"{aggregate} {aggregate_id} at version {past.version} ({when_then})"
        table = Table(title=title, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for field, value in past.state.model_dump(mode="json").items():
            shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
            table.add_row(field, escape(shown))
        console.print(table)

    run_with_commands(show)


def _known(aggregate: str) -> None:
    """A user error before anything is opened: no aggregate of that name exists."""
    if aggregate not in AGGREGATES:
        raise CliError(f"No aggregate {aggregate!r}; known: {', '.join(sorted(AGGREGATES))}.")
