"""`sutazai up` and `sutazai status`: the servers and the running platform."""

from __future__ import annotations

import asyncio

import typer
from rich.markup import escape
from rich.table import Table

from runtime.agents import AgentOptions, run_agents
from runtime.bootstrap import (
    PROJECTORS,
    Platform,
    connect,
    run_projections,
    serve_commands,
)
from runtime.cli.base import (
    app,
    console,
    errors,
    load_settings,
    stop_signal,
)
from runtime.gateway_wiring import ensure_admin, serve_gateway
from runtime.servers import ServerError
from runtime.settings import Settings
from runtime.stack import ServerStatus, Stack


def _status_table(statuses: list[ServerStatus]) -> Table:
    table = Table(title="SutazAI servers")
    table.add_column("server")
    table.add_column("address", overflow="fold")
    table.add_column("run by")
    table.add_column("pid", justify="right")
    table.add_column("health")
    for status in statuses:
        table.add_row(
            status.name,
            status.url,
            "sutazai" if status.embedded else "external",
            str(status.pid) if status.pid else "-",
            "[green]healthy[/]" if status.healthy else f"[red]down[/] {status.error or ''}",
        )
    return table


async def _serve(settings: Settings) -> None:
    stack = Stack(settings)
    stop = stop_signal()

    def show(name: str, what: str) -> None:
        console.print(f"  {name:<9} {what}")

    console.print(f"Starting the stack, data under [bold]{stack.root}[/]")
    try:
        await stack.start(progress=show)
        async with (
            connect(settings, stack) as platform,
            serve_commands(platform),
            run_projections(settings, platform.store, platform.postgres, graph=platform.graph),
            serve_gateway(platform, settings.gateway_port) as gateway,
            run_agents(platform, AgentOptions()) as agents,
        ):
            console.print(_status_table(await stack.status()))
            console.print("Commands answer on sutazai.cmd.<CommandName>.")
            names = ", ".join([p.name for p in PROJECTORS] + ["graph"])
            console.print(f"Projections running: {names}.")
            working = ", ".join(["task-coordinator", *(card.name for card in agents)])
            console.print(f"Agents running: {working}.")
            console.print(f"GraphQL (GraphiQL in a browser): {gateway}/graphql")
            await _announce_admin(platform)
            console.print("SutazAI is up. Press Ctrl-C to stop.")
            await stop.wait()
    finally:
        console.print("Stopping…")
        await stack.stop(progress=show)
        console.print("Stopped.")


async def _announce_admin(platform: Platform) -> None:
    """Create the bootstrap admin on first start; show a generated password this once."""
    password = await ensure_admin(platform)
    name = platform.settings.admin_username
    if password is not None:
        console.print(
            f"[bold yellow]Created the admin user {name!r} with password {password}[/] "
            "(shown only now; set SUTAZAI_ADMIN_PASSWORD to choose it)."
        )


async def _serve_gateway_only(settings: Settings) -> None:
    stack = Stack(settings)
    stop = stop_signal()
    async with (
        connect(settings, stack) as platform,
        serve_gateway(platform, settings.gateway_port) as gateway,
    ):
        await _announce_admin(platform)
        console.print(f"GraphQL (GraphiQL in a browser): {gateway}/graphql. Ctrl-C stops it.")
        await stop.wait()


@app.command()
def gateway() -> None:
    """Serve only the GraphQL gateway, against a platform already up (another replica)."""
    settings = load_settings()
    try:
        asyncio.run(_serve_gateway_only(settings))
    except (OSError, ConnectionError) as error:
        errors.print(
            f"[red]The platform does not answer[/] ({escape(repr(error))}). "
            "Is it up? Start it with `sutazai up`."
        )
        raise typer.Exit(2) from error


@app.command()
def up() -> None:
    """Start every server and part of the platform; Ctrl-C stops all of it."""
    settings = load_settings()
    try:
        asyncio.run(_serve(settings))
    except ServerError as error:
        errors.print(f"[red]Could not start {error.server}:[/] {escape(str(error))}")
        raise typer.Exit(1) from error


@app.command()
def status() -> None:
    """Show each server, its address and whether it answers."""
    settings = load_settings()
    statuses = asyncio.run(Stack(settings).status())
    console.print(_status_table(statuses))
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)
