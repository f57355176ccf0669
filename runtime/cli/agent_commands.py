"""`sutazai agents …`: run agents as a process of their own, and see who is online."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import ollama
import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from eventstore.store import EventStore
from handlers.code_assistant import CAPABILITIES as CODE_CAPABILITIES
from handlers.code_assistant import CodeWork
from handlers.model_port import ModelPolicy, ModelPort
from handlers.presence import agents_bucket, online_agents
from handlers.replay_eval import (
    CallLog,
    Comparison,
    RunOutcome,
    assignments,
    recorded_run,
    run_again,
)
from runtime.agents import AGENT_KINDS, AgentOptions, run_agents
from runtime.cli.base import (
    CliError,
    agents_app,
    connected_platform,
    connected_read_side,
    console,
    reaching,
    read_settings,
    run,
    stop_signal,
    without_vectors,
)
from runtime.gateway_wiring import serve_probes
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


EVALUATED: dict[str, list[str]] = {"code-assistant": CODE_CAPABILITIES}
"""The agents whose work can run again on recorded tasks (their work sends no command)."""


def _since(value: str) -> tuple[int, datetime | None]:
    """`--since`: a log sequence, or an ISO 8601 time."""
    if value.isdigit():
        return max(1, int(value)), None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise CliError(f"--since takes a log sequence or an ISO 8601 time: {value!r}") from error
    return 1, moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _outcome(outcome: RunOutcome) -> str:
    colour = "green" if outcome.valid else "red"
    return f"[{colour}]{outcome.status}[/] {escape(outcome.result_class)}"


def _comparisons_table(title: str, compared: list[Comparison]) -> Table:
    table = Table(title=title)
    for column in ("seq", "task", "type", "recorded", "new", "same", "ms", "tokens"):
        table.add_column(column, justify="right" if column in ("seq", "ms", "tokens") else "left")
    for row in compared:
        table.add_row(
            str(row.sequence),
            str(row.task_id)[:8],
            row.task_type,
            _outcome(row.recorded),
            _outcome(row.new),
            "yes" if row.same_class else "[yellow]no[/]",
            f"{_ms(row.recorded.latency_ms)} → {_ms(row.new.latency_ms)}",
            f"{row.recorded.completion_tokens} → {row.new.completion_tokens}",
        )
    return table


@agents_app.command("eval")
def agents_eval(
    agent: Annotated[
        str, typer.Option(help=f"The agent whose work runs again: {', '.join(EVALUATED)}.")
    ],
    since: Annotated[
        str, typer.Option(help="The first assignment to run again: a log sequence or a time.")
    ] = "1",
    model: Annotated[
        str | None, typer.Option(help="The model to run it on (default: SUTAZAI_CHAT_MODEL).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many tasks.")] = 20,
    output: Annotated[Path, typer.Option(help="Where every comparison goes, as JSON.")] = Path(
        "agents-eval.json"
    ),
) -> None:
    """Run an agent's work again on tasks it was given, against a model, and compare with what
    the log recorded. Reads the log only: nothing is appended, no task changes."""
    if agent not in EVALUATED:
        raise CliError(f"No replay evaluation for {agent!r}; known: {', '.join(EVALUATED)}")
    from_sequence, from_time = _since(since)
    settings = read_settings()
    stack = Stack(settings)
    chat_model = model or settings.chat_model

    async def evaluate() -> tuple[list[Comparison], int]:
        async with contextlib.AsyncExitStack() as opened:
            with reaching(stack, "nats"):
                store = await EventStore.connect(
                    stack.nats_url, timeout=settings.store_timeout, name="sutazai-eval"
                )
            opened.push_async_callback(store.client.close)
            found = [
                pair
                async for pair in assignments(
                    store,
                    EVALUATED[agent],
                    since_sequence=from_sequence,
                    since_time=from_time,
                    limit=limit,
                )
            ]
            calls = CallLog()
            port = ModelPort(
                ollama.AsyncClient(host=stack.model_url, timeout=settings.model_timeout),
                calls,
                agent_id=None,
                chat_model=chat_model,
                embed_model=settings.embed_model,
                policy=ModelPolicy(
                    timeout=settings.model_timeout, attempts=settings.model_attempts
                ),
            )
            work = CodeWork(port, max_tokens=settings.model_max_tokens)
            compared: list[Comparison] = []
            unended = 0
            with Progress(console=console, transient=True) as progress:
                running = progress.add_task(f"Running {agent} again", total=len(found))
                for assigned, task in found:
                    recorded = await recorded_run(store, assigned, task)
                    if recorded is None:  # still running, or lost: nothing to compare with
                        unended += 1
                    else:
                        with reaching(stack, "model"):
                            new, result = await run_again(work, calls, chat_model, assigned, task)
                        compared.append(Comparison(assigned.sequence, task, recorded, new, result))
                    progress.advance(running)
            return compared, unended

    compared, unended = run(evaluate())
    if not compared and not unended:
        console.print(f"No recorded {agent} task since {since}: nothing to run again.")
        return
    console.print(_comparisons_table(f"{agent}: recorded vs {chat_model}", compared))
    total = len(compared)
    console.print(
        f"{total} tasks: valid {sum(r.recorded.valid for r in compared)}/{total} recorded,"
        f" {sum(r.new.valid for r in compared)}/{total} new; same result class"
        f" {sum(r.same_class for r in compared)}/{total}."
    )
    if unended:
        console.print(f"{unended} assignments had no recorded end yet and were left out.")
    output.write_text(json.dumps([row.details() for row in compared], indent=2) + "\n")
    console.print(f"Details: {output}. Nothing was appended to the log.")
