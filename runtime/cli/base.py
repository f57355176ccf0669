"""The `sutazai` app, its command groups, and what every command shares."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import nats.errors
import typer
from rich.console import Console
from rich.markup import escape

from commands.dispatch import CommandDispatcher
from eventstore.errors import EventStoreError, StoreUnavailable
from runtime.bootstrap import (
    connect_store,
)
from runtime.settings import Settings
from runtime.stack import Stack
from runtime.structured_logging import configure_logging

app = typer.Typer(
    name="sutazai",
    help="SutazAI: AI agents on local models, over an event-sourced NATS JetStream core.",
    no_args_is_help=True,
    add_completion=False,
)
events_app = typer.Typer(help="Read the event log.", no_args_is_help=True)
task_app = typer.Typer(help="Submit and inspect tasks.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(task_app, name="task")
audit_app = typer.Typer(help="Answer audit questions from the log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
projections_app = typer.Typer(help="The read models fed from the log.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")
schemas_app = typer.Typer(help="The published contract: JSON Schema, AsyncAPI, docs.")
app.add_typer(schemas_app, name="schemas")
agents_app = typer.Typer(help="The AI agents.", no_args_is_help=True)
app.add_typer(agents_app, name="agents")
dlq_app = typer.Typer(help="Events agents gave up on: list and replay them.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def load_settings() -> Settings:
    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return settings


@asynccontextmanager
async def connected_commands() -> AsyncIterator[CommandDispatcher]:
    settings = load_settings()
    stack = Stack(settings)
    try:
        async with connect_store(settings, stack) as commands:
            yield commands
    except (nats.errors.NoServersError, OSError, StoreUnavailable) as error:
        errors.print(
            f"[red]NATS at {stack.nats_url} does not answer[/] ({escape(repr(error))}). "
            "Is the platform up? Start it with `sutazai up`."
        )
        raise typer.Exit(2) from error


def run_with_commands(work: Callable[[CommandDispatcher], Awaitable[T]]) -> T:
    async def main() -> T:
        async with connected_commands() as commands:
            return await work(commands)

    try:
        return asyncio.run(main())
    except EventStoreError as error:
        errors.print(f"[red]{type(error).__name__}:[/] {escape(str(error))}")
        raise typer.Exit(1) from error


def run_against_platform(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; a platform that is not up is said plainly, not as a traceback."""
    try:
        return asyncio.run(work)
    except (OSError, nats.errors.NoServersError, StoreUnavailable) as error:
        errors.print(f"[red]The platform does not answer ({escape(repr(error))}). Is it up?[/]")
        raise typer.Exit(2) from error


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, a service manager's stop, and the terminal going away: each stops gracefully.

SIGHUP too, because its default action would end the process on the spot, skipping the
ordered stop; there is no configuration to reload (settings are read once, at start).
"""


def stop_signal() -> asyncio.Event:
    """An event set by a stop signal: what a foreground command waits on before it stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    return stop
