"""The `sutazai` command line."""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Annotated, TypeVar
from uuid import UUID

import nats.errors
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from commands.aggregates import TASK
from commands.dispatch import CommandDispatcher, aggregate_id_for
from commands.loading import load_aggregate
from eventstore.errors import EventStoreError
from projections import audit
from runtime.bootstrap import connect, connect_store, serve_commands
from runtime.servers import ServerError
from runtime.settings import Settings
from runtime.stack import ServerStatus, Stack
from runtime.structured_logging import configure_logging
from schemas import published
from schemas.commands import CommandAccepted, CommandRequest
from schemas.envelope import Actor, RecordedEvent

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
schemas_app = typer.Typer(help="The published contract: JSON Schema, AsyncAPI, docs.")
app.add_typer(schemas_app, name="schemas")

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


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
        async with connect(settings, stack) as platform, serve_commands(platform):
            console.print(_status_table(await stack.status()))
            console.print("Commands answer on sutazai.cmd.<CommandName>.")
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
        errors.print(f"[red]Could not start {error.server}:[/] {escape(str(error))}")
        raise typer.Exit(1) from error


@app.command()
def status() -> None:
    """Show each server, its address and whether it answers."""
    settings = _settings()
    statuses = asyncio.run(Stack(settings).status())
    console.print(_status_table(statuses))
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@asynccontextmanager
async def _commands() -> AsyncIterator[CommandDispatcher]:
    settings = _settings()
    stack = Stack(settings)
    try:
        async with connect_store(settings, stack) as commands:
            yield commands
    except (nats.errors.NoServersError, OSError) as error:
        errors.print(
            f"[red]NATS at {stack.nats_url} does not answer[/] ({error!r}). "
            "Is the platform up? Start it with `sutazai up`."
        )
        raise typer.Exit(2) from error


def _run(work: Callable[[CommandDispatcher], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _commands() as commands:
            return await work(commands)

    try:
        return asyncio.run(main())
    except EventStoreError as error:
        errors.print(f"[red]{type(error).__name__}:[/] {escape(str(error))}")
        raise typer.Exit(1) from error


def _event_line(event: RecordedEvent) -> str:
    envelope = event.envelope
    return (
        f"[bold]{event.sequence:>8}[/] {envelope.occurred_at:%Y-%m-%d %H:%M:%S} "
        f"[cyan]{envelope.event_type}[/] {envelope.aggregate_type} {envelope.aggregate_id} "
        f"v{envelope.aggregate_version} by {envelope.actor.kind}:{escape(envelope.actor.id)}"
        + (f" — {escape(envelope.reason)}" if envelope.reason else "")
    )


@events_app.command("tail")
def events_tail(
    from_sequence: Annotated[int, typer.Option("--from", help="First stream sequence.")] = 1,
    subject: Annotated[
        str, typer.Option(help="Subject filter, e.g. 'sutazai.events.task.>'.")
    ] = "sutazai.events.>",
    follow: Annotated[bool, typer.Option(help="Keep printing new events.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON envelope a line.")] = False,
) -> None:
    """Print the event log from a sequence on, and (by default) follow it."""

    async def tail(commands: CommandDispatcher) -> None:
        async for event in commands.bus.store.read(
            from_sequence=from_sequence, subject_filter=subject, follow=follow
        ):
            if as_json:
                print(
                    json.dumps(
                        {"sequence": event.sequence, **event.envelope.model_dump(mode="json")}
                    )
                )
            else:
                console.print(_event_line(event), highlight=False)

    with suppress(KeyboardInterrupt):
        _run(tail)


def _local_actor() -> tuple[Actor, UUID]:
    user = getpass.getuser()
    return Actor(id=f"cli:{user}", kind="user"), aggregate_id_for(f"local-user:{user}")


@task_app.command("submit")
def task_submit(
    task_type: Annotated[str, typer.Option("--type", help="e.g. code.generate, rag.ask.")],
    payload: Annotated[str, typer.Option(help="JSON object with the task's input.")] = "{}",
    priority: Annotated[int, typer.Option(min=1, max=10, help="1 is the highest.")] = 5,
    max_attempts: Annotated[int, typer.Option(min=1)] = 3,
    command_id: Annotated[
        str | None, typer.Option(help="Idempotency key: the same id never submits twice.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
) -> None:
    """Submit a task and print its id, version and stream sequence."""
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as error:
        errors.print(f"[red]--payload is not JSON:[/] {escape(str(error))}")
        raise typer.Exit(2) from error
    actor, owner = _local_actor()
    request = CommandRequest(
        command_id=command_id,
        actor=actor,
        reason=reason,
        payload={
            "owner_id": str(owner),
            "task_type": task_type,
            "priority": priority,
            "payload": body,
            "max_attempts": max_attempts,
        },
    )
    reply = _run(lambda commands: commands.dispatch("SubmitTask", request))
    if not isinstance(reply, CommandAccepted):
        errors.print(f"[red]Refused ({reply.error.code}):[/] {escape(reply.error.message)}")
        for field in reply.error.fields:
            errors.print(f"  {field.field}: {escape(field.message)}")
        raise typer.Exit(1)
    again = " (already submitted: this is the first outcome)" if reply.duplicate else ""
    console.print(
        f"Task [bold]{reply.aggregate_id}[/] submitted{again}: "
        f"version {reply.version}, sequence {reply.sequence}"
    )


@task_app.command("show")
def task_show(task_id: Annotated[UUID, typer.Argument(help="The task's id.")]) -> None:
    """Show a task as folded from the log, with its version."""

    async def show(commands: CommandDispatcher) -> None:
        loaded = await load_aggregate(commands.bus.store, TASK, task_id)
        if loaded.state is None:
            errors.print(f"[red]No task {task_id}[/]")
            raise typer.Exit(1)
        table = Table(title=f"task {task_id} at version {loaded.version}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for field, value in loaded.state.model_dump(mode="json").items():
            table.add_row(field, json.dumps(value) if isinstance(value, dict) else str(value))
        table.add_row("version", str(loaded.version))
        table.add_row("last sequence", str(loaded.sequence))
        console.print(table)

    _run(show)


@schemas_app.command("export")
def schemas_export(
    check: Annotated[
        bool, typer.Option(help="Change nothing; fail if the files differ from the code.")
    ] = False,
) -> None:
    """Write JSON Schemas, the AsyncAPI document and docs/events.md from the models."""
    if check:
        wrong = published.differences()
        for path in wrong:
            errors.print(f"[red]out of date:[/] {path}")
        if wrong:
            errors.print("Run `sutazai schemas export` and commit the result.")
            raise typer.Exit(1)
        console.print("The published contract matches the code.")
        return
    changed = published.export()
    for path in changed:
        console.print(f"wrote {path}")
    console.print(f"{len(changed)} file(s) changed.")


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
        _run(work)
    except audit.UnknownAggregateType as error:
        errors.print(f"[red]{escape(str(error))}[/]")
        raise typer.Exit(2) from error
