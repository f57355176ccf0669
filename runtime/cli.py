"""The `sutazai` command line."""

from __future__ import annotations

import asyncio
import signal

import typer
from rich.console import Console
from rich.table import Table

from runtime.bootstrap import connect
from runtime.servers import ServerError
from runtime.settings import Settings
from runtime.stack import ServerStatus, Stack
from runtime.structured_logging import configure_logging

app = typer.Typer(
    name="sutazai",
    help="SutazAI: AI agents on local models, over an event-sourced NATS JetStream core.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return settings


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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def show(name: str, what: str) -> None:
        console.print(f"  {name:<9} {what}")

    console.print(f"Starting the stack, data under [bold]{stack.root}[/]")
    try:
        await stack.start(progress=show)
        async with connect(settings, stack):
            console.print(_status_table(await stack.status()))
            console.print("SutazAI is up. Press Ctrl-C to stop.")
            await stop.wait()
    finally:
        console.print("Stopping…")
        await stack.stop(progress=show)
        console.print("Stopped.")


@app.command()
def up() -> None:
    """Start every server and part of the platform; Ctrl-C stops all of it."""
    settings = _settings()
    try:
        asyncio.run(_serve(settings))
    except ServerError as error:
        errors.print(f"[red]Could not start {error.server}:[/] {error}")
        raise typer.Exit(1) from error


@app.command()
def status() -> None:
    """Show each server, its address and whether it answers."""
    settings = _settings()
    statuses = asyncio.run(Stack(settings).status())
    console.print(_status_table(statuses))
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)
