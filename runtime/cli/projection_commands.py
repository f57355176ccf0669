"""`sutazai projections …`: the read models."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from eventstore.blobs import BlobStore
from eventstore.store import EventStore
from handlers.document_index import DocumentIndex
from handlers.vector_rebuild import VectorsRebuilt, rebuild_vectors
from projections.read_models import projector_named
from projections.rebuild import rebuild, verify
from projections.runtime import Projector
from runtime.bootstrap import PROJECTORS, model_port, run_projections
from runtime.cli.base import (
    CliError,
    connected_platform,
    connected_read_side,
    console,
    projections_app,
    read_settings,
    run,
    stop_signal,
    without_vectors,
)
from runtime.gateway_wiring import serve_probes

T = TypeVar("T")

GRAPH = "graph"
"""The graph store's projection: `--only graph` runs it alone."""
VECTORS = "vectors"
"""The document vectors: rebuilt by re-embedding documents from the log."""


@projections_app.command("status")
def projections_status(
    rate_window: Annotated[
        float, typer.Option(min=0.1, help="Seconds over which the rate is measured.")
    ] = 1.0,
) -> None:
    """Each projector's checkpoint, how many of its events it has yet to apply, its state."""

    async def gather() -> tuple[int, dict[str, asyncpg.Record], dict[str, int], dict[str, float]]:
        async with connected_read_side() as (commands, pool):
            store = commands.bus.store
            query = (
                "SELECT name, sequence, updated_at, status, error, error_sequence"
                " FROM projection_checkpoints"
            )
            earlier = {row["name"]: int(row["sequence"]) for row in await pool.fetch(query)}
            started = time.monotonic()
            await asyncio.sleep(rate_window)
            found = {row["name"]: row for row in await pool.fetch(query)}
            elapsed = time.monotonic() - started
            last = await store.last_sequence()
            behind: dict[str, int] = {}
            rate: dict[str, float] = {}
            for p in PROJECTORS:
                now = int(found[p.name]["sequence"]) if p.name in found else 0
                behind[p.name] = await store.count_after(now, p.subject_filter)
                before = await store.count_after(earlier.get(p.name, 0), p.subject_filter)
                # Its own events between the two checkpoints, whatever else the log holds.
                rate[p.name] = (before - behind[p.name]) / elapsed
            return last, found, behind, rate

    last, rows, behind, rate = run(gather())
    # One line a projector, within 80 columns: the errors go under the table, whole.
    table = Table(title=f"Projections (log end: sequence {last})", pad_edge=False)
    table.add_column("projector", no_wrap=True)
    for column in ("checkpoint", "behind", "events/s"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("last applied", no_wrap=True)
    today = datetime.now(UTC).date()
    problems: list[str] = []
    for projector in PROJECTORS:
        row = rows.get(projector.name)
        state = row["status"] if row else "no events yet"
        if row and row["error"]:
            problems.append(f"{projector.name} at {row['error_sequence']}: {row['error']}")
        updated: datetime | None = row["updated_at"] if row else None
        table.add_row(
            projector.name,
            str(row["sequence"] if row else 0),
            str(behind[projector.name]),
            f"{rate[projector.name]:,.0f}",
            "[red]stopped[/]" if state == "stopped" else state,
            _when(updated, today),
        )
    console.print(table)
    for problem in problems:
        console.print(f"[red]error[/] {escape(problem)}")


def _when(moment: datetime | None, today: date) -> str:
    """A time of today, or the day of an older one: short enough for a narrow table."""
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return f"{moment:%H:%M:%S}" if moment.date() == today else f"{moment:%Y-%m-%d}"


def _projector(name: str) -> Projector:
    try:
        return projector_named(name)
    except LookupError as error:
        raise CliError(str(error)) from error


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>10} events/s"),
        TimeRemainingColumn(),
        console=console,
    )


@contextlib.contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar for long work; yields the callback that moves it (done, in all)."""
    with _progress_bar() as bar:
        task = bar.add_task(description, total=None, rate="-")
        started = time.monotonic()

        def progress(done: int, aim: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=aim, rate=f"{done / elapsed:,.0f}")

        yield progress


def _with_read_side(
    work: Callable[[EventStore, asyncpg.Pool, Callable[[int, int], None]], Awaitable[T]],
    description: str,
) -> T:
    async def main() -> T:
        async with connected_read_side() as (commands, pool):
            with _progress(description) as progress:
                return await work(commands.bus.store, pool, progress)

    return run(main())


def _rebuild_vectors(*, fresh: bool) -> None:
    """Re-embed every document from the log (handlers/vector_rebuild.py)."""
    settings = read_settings()

    async def main() -> VectorsRebuilt:
        async with connected_platform(settings) as platform:
            index = DocumentIndex(platform.vectors, model_port(platform, None))
            with _progress("re-embedding documents") as progress:
                return await rebuild_vectors(
                    platform.store,
                    BlobStore(platform.store),
                    index,
                    platform.postgres,
                    fresh=fresh,
                    progress=progress,
                )

    report = run(main())
    console.print(
        f"vectors rebuilt: {report.documents:,} documents, {report.chunks:,} chunks in "
        f"{report.seconds:.1f}s, through sequence {report.sequence}."
    )


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[
        str, typer.Argument(help="The projector: tasks, users, event_log, …, or vectors")
    ],
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh/--resume",
            help="vectors: drop every vector first, or go on from the last rebuild's checkpoint.",
        ),
    ] = True,
) -> None:
    """Rebuild a read model from the log beside the live one, then switch to it atomically.

    `vectors` re-embeds every document still in the log into the vector store.
    """
    if name == VECTORS:
        _rebuild_vectors(fresh=fresh)
        return
    projector = _projector(name)
    report = _with_read_side(
        lambda store, pool, progress: rebuild(store, pool, projector, progress=progress),
        f"rebuilding {name}",
    )
    console.print(
        f"{name} is now version {report.version}: {report.events:,} events in "
        f"{report.seconds:.1f}s ({report.events / max(report.seconds, 1e-6):,.0f} events/s), "
        f"at sequence {report.sequence}."
    )


@projections_app.command("verify")
def projections_verify(
    name: Annotated[str, typer.Argument(help="The projector: tasks, users, event_log, …")],
) -> None:
    """Rebuild a read model into a scratch schema and compare every table with the live one."""
    projector = _projector(name)
    checks = _with_read_side(
        lambda store, pool, progress: verify(store, pool, projector, progress=progress),
        f"verifying {name}",
    )
    table = Table(title=f"verify {name}")
    for column in ("table", "live rows", "rebuilt rows", "same"):
        table.add_column(column)
    for check in checks:
        same = "[green]yes[/]" if check.matches else "[red]NO[/]"
        table.add_row(check.table, str(check.live_rows), str(check.rebuilt_rows), same)
    console.print(table)
    if not all(check.matches for check in checks):
        raise CliError(
            f"{name} differs from the log; `sutazai projections rebuild {name}` rebuilds it."
        )


@projections_app.command("run")
def projections_run(
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only this projector (repeatable; `graph` is the graph store's)."),
    ] = None,
) -> None:
    """Run projectors in the foreground (as `sutazai up` does) until Ctrl-C."""
    for name in only or ():
        if name != GRAPH:
            _projector(name)
    settings = without_vectors(read_settings(foreground=True))  # projectors keep no vectors
    with_graph = not only or GRAPH in only

    async def main() -> None:
        stop = stop_signal()
        async with (
            connected_platform(settings, part="projections") as platform,
            serve_probes(platform),
            run_projections(
                settings,
                platform.store,
                platform.postgres,
                only or (),
                graph=platform.graph if with_graph else None,
                readiness=platform.readiness,
                metrics=platform.metrics,
                tracing=platform.tracing,
            ) as runners,
        ):
            names = [runner.projector.name for runner in runners] + ([GRAPH] if with_graph else [])
            console.print(f"Projecting {', '.join(names)}. Ctrl-C stops.")
            await stop.wait()

    run(main())
