"""`sutazai events …` and `sutazai task …`: the log and tasks."""

from __future__ import annotations

import getpass
import json
from contextlib import suppress
from typing import Annotated
from uuid import UUID

import typer
from rich.markup import escape
from rich.table import Table

from commands.dispatch import CommandDispatcher, aggregate_id_for
from commands.loading import load_aggregate
from domain.aggregates import TASK
from runtime.cli.base import (
    CliError,
    console,
    events_app,
    refusal,
    run_with_commands,
    task_app,
)
from schemas.commands import CommandAccepted, CommandRequest
from schemas.envelope import Actor, RecordedEvent


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
        run_with_commands(tail)


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
        raise CliError(f"--payload is not JSON: {error}") from error
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
    reply = run_with_commands(lambda commands: commands.dispatch("SubmitTask", request))
    if not isinstance(reply, CommandAccepted):
        raise CliError(f"The task was {refusal(reply)}")
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
            raise CliError(f"No task {task_id} in the log.")
        table = Table(title=f"task {task_id} at version {loaded.version}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for field, value in loaded.state.model_dump(mode="json").items():
            table.add_row(field, json.dumps(value) if isinstance(value, dict) else str(value))
        table.add_row("version", str(loaded.version))
        table.add_row("last sequence", str(loaded.sequence))
        console.print(table)

    run_with_commands(show)
