"""`sutazai dlq …`: the events consumers gave up on, and replaying them through their agent.

A replay is a request to the running agent that owns the consumer (`sutazai.replay.<consumer>`,
see `handlers.consumers`): it runs its handler on the parked event and, when that succeeds,
takes the entry off the DLQ. The log itself is never written.
"""

from __future__ import annotations

from typing import Annotated

import nats.errors
import typer
from rich.markup import escape
from rich.table import Table

from commands.dispatch import CommandDispatcher
from eventstore.dlq import ParkedEvent, parked_events
from eventstore.store import EventStore
from handlers.consumers import ReplayOutcome, ReplayRequest, replay_subject
from runtime.bootstrap import PROJECTORS
from runtime.cli.base import CliError, console, dlq_app, errors, run_with_commands

_PROJECTIONS = frozenset({*(p.name for p in PROJECTORS), "graph"})


async def _parked(
    store: EventStore, consumer: str | None, sequence: int | None
) -> list[ParkedEvent]:
    return [
        parked
        async for parked in parked_events(store, consumer)
        if sequence is None or parked.stream_sequence == sequence
    ]


def _short(text: str, width: int = 120) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


@dlq_app.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's entries.")] = None,
) -> None:
    """Every event still parked on the DLQ: who gave up on it, why and when."""

    async def gather(commands: CommandDispatcher) -> list[ParkedEvent]:
        return await _parked(commands.bus.store, consumer, None)

    entries = run_with_commands(gather)
    if not entries:
        console.print("The DLQ is empty: no consumer has given up on an event.")
        return
    # A section an entry, two columns: ids and errors whole within 80 columns.
    table = Table(title=f"SutazAI DLQ: {len(entries)} parked event(s)", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for entry in entries:
        envelope = entry.envelope
        when = f"{entry.parked_at:%Y-%m-%d %H:%M:%S} UTC" if entry.parked_at else "-"
        table.add_row(escape(entry.consumer), f"[cyan]{entry.event_type}[/] parked at {when}")
        table.add_row("stream sequence", str(entry.stream_sequence))
        table.add_row("aggregate", f"{envelope.aggregate_type} {envelope.aggregate_id}")
        table.add_row("error", escape(_short(entry.error)), end_section=True)
    console.print(table)
    console.print("Replay with `sutazai dlq replay [--consumer NAME] [--sequence N]`.")


async def _replay_one(store: EventStore, entry: ParkedEvent, timeout: float) -> str | None:
    """None when replayed; else why not, in words."""
    request = ReplayRequest(dlq_sequence=entry.dlq_sequence).model_dump_json().encode()
    try:
        reply = await store.client.request(replay_subject(entry.consumer), request, timeout=timeout)
    except nats.errors.NoRespondersError:
        if entry.consumer in _PROJECTIONS:
            return (
                f"{entry.consumer} is a projector, not an agent: fix the cause and restart it "
                "(it applies its events from its checkpoint), or rebuild it"
            )
        return (
            f"no running agent consumes {entry.consumer}; start it "
            "(`sutazai up` or `sutazai agents run`) and replay again"
        )
    except nats.errors.TimeoutError:
        return f"the agent did not answer within {timeout:g} s (it may still be working on it)"
    outcome = ReplayOutcome.model_validate_json(reply.data)
    return None if outcome.ok else f"failed again: {outcome.error}"


@dlq_app.command("replay")
def dlq_replay(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's entries.")] = None,
    sequence: Annotated[
        int | None, typer.Option(help="Only the event at this stream sequence (see `dlq list`).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for the agent's handler, per event.")
    ] = 120.0,
) -> None:
    """Run parked events through their consumer's handler again; each success leaves the DLQ.

    The running agent that owns the consumer does the work, with the same handler and the same
    command ids as the first time: nothing is appended to the log to re-deliver it.
    """

    async def replay(commands: CommandDispatcher) -> tuple[int, int]:
        store = commands.bus.store
        entries = await _parked(store, consumer, sequence)
        if not entries:
            which = " matching" if consumer or sequence is not None else ""
            console.print(f"Nothing{which} is parked on the DLQ: nothing to replay.")
            return 0, 0
        replayed = 0
        for entry in entries:
            label = f"{entry.consumer} #{entry.stream_sequence} {entry.event_type}"
            with console.status(f"Replaying {escape(label)}…"):
                why_not = await _replay_one(store, entry, timeout)
            if why_not is None:
                replayed += 1
                console.print(f"[green]replayed[/] {escape(label)}: handled and off the DLQ")
            else:
                errors.print(f"[red]not replayed[/] {escape(label)}: {escape(_short(why_not))}")
        return replayed, len(entries)

    replayed, total = run_with_commands(replay)
    if total:
        console.print(f"{replayed} of {total} parked event(s) replayed.")
    if replayed < total:
        raise CliError(
            f"{total - replayed} of {total} parked event(s) not replayed: see why above."
        )
