"""`sutazai agents …`: run agents as a process of their own, and see who is online."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from handlers.presence import agents_bucket, online_agents
from runtime.agents import AGENT_KINDS, AgentOptions, run_agents
from runtime.cli.base import (
    CliError,
    agents_app,
    connected_platform,
    connected_read_side,
    console,
    read_settings,
    run,
    stop_signal,
    without_vectors,
)
from runtime.gateway_wiring import serve_probes


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
        raise CliError(f"No agent named {', '.join(unknown)}; known: {', '.join(AGENT_KINDS)}")
    options = AgentOptions(only=only or (), replica=replica)
    settings = read_settings(foreground=True)
    if not options.runs("document-assistant"):
        # Only the document assistant keeps vectors; without it this process runs beside
        # `sutazai up`, whose local-mode storage is its own.
        settings = without_vectors(settings)

    async def main() -> None:
        stop = stop_signal()
        async with (
            connected_platform(settings, part="agents") as platform,
            serve_probes(platform),
            run_agents(platform, options) as cards,
        ):
            names = ", ".join(card.name for card in cards) or "the coordinator"
            console.print(f"Agents running: {names}. Ctrl-C stops.")
            await stop.wait()

    run(main())


@agents_app.command("list")
def agents_list() -> None:
    """Every registered agent, its kind, capabilities and whether its heartbeat is alive."""

    async def gather() -> tuple[list[dict[str, object]], set[str]]:
        # The read model (PostgreSQL) and the heartbeats (NATS): nothing else is opened.
        async with connected_read_side() as (commands, pool):
            rows = await pool.fetch(
                "SELECT agent_id, name, kind, capabilities, status FROM agents ORDER BY name"
            )
            bucket = await agents_bucket(commands.bus.store)
            online = {card.agent_id for card in await online_agents(bucket)}
            return [dict(row) for row in rows], online

    rows, online = run(gather())
    if not rows:
        console.print("No agent is registered yet: `sutazai up` or `sutazai agents run` adds them.")
        return
    # One line an agent at 80 columns (a long capability list folds in its own column).
    table = Table(title="SutazAI agents", pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("capabilities", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("alive", no_wrap=True)
    for row in rows:
        alive = str(row["agent_id"]) in online
        capabilities = row["capabilities"]
        table.add_row(
            escape(str(row["name"])),
            str(row["kind"]),
            escape(", ".join(capabilities) if isinstance(capabilities, list) else "-"),
            str(row["status"]),
            "[green]yes[/]" if alive else "[dim]no[/]",
        )
    console.print(table)
