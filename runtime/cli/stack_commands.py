"""`sutazai up` and `sutazai status`: the servers and the running platform."""

from __future__ import annotations

import asyncio
import contextlib

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
from runtime.readiness import PartsNotReady
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
    """Run the platform until a stop signal; a signal while starting cancels the start."""
    stack = Stack(settings)
    stop = stop_signal()
    platform_up = asyncio.Event()
    serving = asyncio.create_task(_run_platform(settings, stack, stop, platform_up))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not platform_up.is_set() and not serving.done():
            serving.cancel()  # still starting: each part stops what it began
        # Once up, a second signal cuts the drain short.
        while not serving.done():
            stop.clear()
            again = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, again}, return_when=asyncio.FIRST_COMPLETED)
            if again.done() and not serving.done():
                console.print("Stopping now, without waiting for work in flight.")
                serving.cancel()
            again.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    finally:
        stopping.cancel()


async def _run_platform(
    settings: Settings, stack: Stack, stop: asyncio.Event, platform_up: asyncio.Event
) -> None:
    """Start the servers and every part, say so once all are live, drain in order on stop.

    Parts stop in reverse: the gateway first (no new requests from outside), then the agents,
    the command endpoint, and last the projections, which take in what the others appended.
    """

    def show(name: str, what: str) -> None:
        console.print(f"  {name:<9} {what}")

    console.print(f"Starting the stack, data under [bold]{stack.root}[/]")
    try:
        await stack.start(progress=show)
        async with connect(settings, stack) as platform:
            readiness = platform.readiness
            async with (
                run_projections(
                    settings,
                    platform.store,
                    platform.postgres,
                    graph=platform.graph,
                    readiness=readiness,
                ),
                serve_commands(platform),
                run_agents(platform, AgentOptions()) as agents,
                serve_gateway(platform, settings.gateway_port) as gateway,
            ):
                await readiness.wait(timeout=settings.startup_timeout)
                console.print(_status_table(await stack.status()))
                console.print("Commands answer on sutazai.cmd.<CommandName>.")
                names = ", ".join([p.name for p in PROJECTORS] + ["graph"])
                console.print(f"Projections running: {names}.")
                working = ", ".join(["task-coordinator", *(card.name for card in agents)])
                console.print(f"Agents running: {working}.")
                console.print(f"GraphQL (GraphiQL in a browser): {gateway}/graphql")
                await _announce_admin(platform)
                console.print(f"Ready: {', '.join(readiness.parts())}.")
                console.print("SutazAI is up. Press Ctrl-C to stop.")
                platform_up.set()
                await stop.wait()
                console.print(
                    f"Stopping: parts finish their work in flight "
                    f"(up to {settings.drain_timeout:g}s each)…"
                )
    finally:
        console.print("Stopping the servers…")
        await asyncio.shield(stack.stop(progress=show))
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
        await platform.readiness.wait(timeout=settings.startup_timeout)
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
    except PartsNotReady as error:
        errors.print(f"[red]The platform did not come up:[/] {escape(str(error))}")
        raise typer.Exit(1) from error


@app.command()
def status() -> None:
    """Show each server, its address and whether it answers."""
    settings = load_settings()
    statuses = asyncio.run(Stack(settings).status())
    console.print(_status_table(statuses))
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)
