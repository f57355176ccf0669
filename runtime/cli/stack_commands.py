"""`sutazai up` and `sutazai status`: the servers and the running platform."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Annotated

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
    CliError,
    Unavailable,
    app,
    connected_platform,
    console,
    read_settings,
    run,
    stop_signal,
    what_to_do,
)
from runtime.gateway_wiring import ensure_admin, serve_gateway
from runtime.servers.errors import ServerStartError
from runtime.settings import LOOPBACK, Settings
from runtime.stack import ServerStatus, Stack


def _status_table(statuses: list[ServerStatus]) -> Table:
    """One line a server, within 80 columns; why a server is down goes under the table."""
    table = Table(title="SutazAI servers")
    table.add_column("server", no_wrap=True)
    table.add_column("address", overflow="fold")
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("health", no_wrap=True)
    for status in statuses:
        pid = str(status.pid) if status.pid else "-"
        table.add_row(
            status.name,
            status.url,
            pid if status.embedded else "external",
            "[green]healthy[/]" if status.healthy else "[red]down[/]",
        )
    return table


def _why_down(statuses: list[ServerStatus]) -> list[str]:
    return [f"{s.name}: {escape(s.error or 'no answer')}" for s in statuses if not s.healthy]


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
                    metrics=platform.metrics,
                    tracing=platform.tracing,
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
    stop = stop_signal()
    # A gateway replica is also a command endpoint: other programs' `sutazai.cmd.*` requests
    # are answered by every replica in one queue group, as GraphQL mutations are.
    async with (
        connected_platform(settings, part="gateway") as platform,
        serve_commands(platform),
        serve_gateway(platform, settings.gateway_port) as gateway,
    ):
        await platform.readiness.wait(timeout=settings.startup_timeout)
        await _announce_admin(platform)
        console.print(f"GraphQL (GraphiQL in a browser): {gateway}/graphql. Ctrl-C stops it.")
        await stop.wait()


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


@app.command()
def gateway() -> None:
    """Serve the GraphQL gateway and NATS command endpoint against a platform already up."""
    settings = read_settings(foreground=True)
    if not _port_is_free(settings.gateway_port):
        raise CliError(
            f"Port {settings.gateway_port} is taken (a gateway?); set SUTAZAI_GATEWAY_PORT."
        )
    run(_serve_gateway_only(settings))


@app.command()
def up(
    cluster: Annotated[
        int | None,
        typer.Option(
            help="Run NATS as a cluster of this many nodes (3), every stream at that many replicas."
        ),
    ] = None,
) -> None:
    """Start every server and part of the platform; Ctrl-C stops all of it."""
    settings = read_settings(foreground=True)
    if cluster is not None:
        if settings.nats_url:
            raise CliError("--cluster starts embedded NATS nodes; unset SUTAZAI_NATS_URL first.")
        if cluster not in (1, 3, 5):
            raise CliError("--cluster takes 1, 3 or 5: a JetStream cluster needs a majority.")
        settings = settings.model_copy(update={"nats_cluster": cluster})
    try:
        run(_serve(settings))
    except ServerStartError as error:
        if error.log_tail:
            console.print(f"[dim]{escape(error.log_tail)}[/]")
        raise


@app.command()
def status() -> None:
    """Show each server, its address and whether it answers."""
    settings = read_settings()
    stack = Stack(settings)
    statuses = run(stack.status())
    console.print(_status_table(statuses))
    for why in _why_down(statuses):
        console.print(why, highlight=False)
    down = [s.name for s in statuses if not s.healthy]
    if down:
        todo = sorted({what_to_do(s) for s in stack if s.name in down})
        verb = "does" if len(down) == 1 else "do"
        raise Unavailable(f"{', '.join(down)} {verb} not answer; {' and '.join(todo)}.")
