"""`sutazai agents …`: run agents as a process of their own, and see who is online."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from handlers.presence import agents_bucket, online_agents
from runtime.agents import AGENT_KINDS, AgentOptions, run_agents
from runtime.bootstrap import connect
from runtime.cli.base import (
    agents_app,
    console,
    errors,
    load_settings,
    run_against_platform,
    stop_signal,
)
from runtime.stack import Stack


@agents_app.command("run")
def agents_run(
    only: Annotated[
        list[str] | None, typer.Option(help=f"Run only this agent: {', '.join(AGENT_KINDS)}.")
    ] = None,
    replica: Annotated[str, typer.Option(help="Names this replica (default: the host name).")] = "",
) -> None:
    """Run agents in the foreground (as `sutazai up` does) until Ctrl-C."""
    unknown = sorted(set(only or ()) - set(AGENT_KINDS))
    if unknown:
        errors.print(
            f"[red]No agent named {', '.join(unknown)}[/]; known: {', '.join(AGENT_KINDS)}"
        )
        raise typer.Exit(2)
    settings = load_settings()
    stack = Stack(settings)

    async def main() -> None:
        stop = stop_signal()
        async with (
            connect(settings, stack) as platform,
            run_agents(platform, AgentOptions(only=only or (), replica=replica)) as cards,
        ):
            names = ", ".join(card.name for card in cards) or "the coordinator"
            console.print(f"Agents running: {names}. Ctrl-C stops.")
            await stop.wait()

    run_against_platform(main())


@agents_app.command("list")
def agents_list() -> None:
    """Every registered agent, its kind, capabilities and whether its heartbeat is alive."""
    settings = load_settings()
    stack = Stack(settings)

    async def gather() -> tuple[list[dict[str, object]], set[str]]:
        async with connect(settings, stack) as platform:
            rows = await platform.postgres.fetch(
                "SELECT agent_id, name, kind, capabilities, status FROM agents ORDER BY name"
            )
            online = {
                card.agent_id for card in await online_agents(await agents_bucket(platform.store))
            }
            return [dict(row) for row in rows], online

    rows, online = run_against_platform(gather())
    table = Table(title="SutazAI agents")
    for column in ("name", "kind", "capabilities", "status", "heartbeat"):
        table.add_column(column)
    for row in rows:
        alive = str(row["agent_id"]) in online
        table.add_row(
            str(row["name"]),
            str(row["kind"]),
            ", ".join(row["capabilities"]),  # type: ignore[arg-type]
            str(row["status"]),
            "[green]alive[/]" if alive else "[dim]none[/]",
        )
    console.print(table)
