"""`sutazai backup` and `sutazai restore`: a consistent copy of the log and its buckets.

The format and what it holds are in `eventstore/backup.py`; docs/operations.md shows the use.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from eventstore.backup import BackupError, back_up, check, restore, target_contents
from eventstore.streams import EVENTS_STREAM
from projections.rebuild import rebuild
from runtime.bootstrap import PROJECTORS
from runtime.cli.base import (
    CliError,
    app,
    connected_commands,
    connected_read_side,
    console,
    errors,
    run,
)


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
    )


class _Steps:
    """One bar per stream, bucket or read model, on stderr."""

    def __init__(self, bar: Progress, verb: str) -> None:
        self.bar = bar
        self.verb = verb
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(f"{self.verb} {what}", total=None)
        task = self.tasks[what]
        self.bar.update(task, completed=done, total=max(total, done))


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


@app.command("backup")
def backup_command(
    path: Annotated[Path, typer.Argument(help="A new (or empty) directory to write into.")],
) -> None:
    """Copy the event log, the DLQ, the KV reservations and snapshots, and the blobs."""

    async def main() -> tuple[int, int, int, float]:
        async with connected_commands() as commands:
            store = commands.bus.store
            started = time.monotonic()
            with _progress_bar() as bar:
                try:
                    manifest = await back_up(
                        store.client,
                        path,
                        timeout=store.timeout,
                        watch=store.watch,
                        progress=_Steps(bar, "copying"),
                    )
                except (BackupError, OSError) as error:
                    raise CliError(f"Backup failed: {error}") from error
            entry = manifest.entry(EVENTS_STREAM)
            last = entry.last_sequence if entry else 0
            return manifest.events, last, manifest.size, time.monotonic() - started

    events, last, size, seconds = run(main())
    console.print(
        f"Backed up {events:,} events (sequences 1 to {last}) to {path}: "
        f"{_size(size)} in {seconds:.1f}s."
    )


@app.command("restore")
def restore_command(
    path: Annotated[Path, typer.Argument(help="A directory `sutazai backup` wrote.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Restore although the target's KV buckets or blobs hold entries (overwritten "
            "key by key); its event log must be empty all the same.",
        ),
    ] = False,
) -> None:
    """Restore a backup into a stack with an empty log, then rebuild every read model."""

    async def main() -> tuple[int, float, float]:
        async with connected_read_side() as (commands, pool):
            store = commands.bus.store
            started = time.monotonic()
            held = await target_contents(store.client, store.timeout)
            if held[EVENTS_STREAM]:
                raise CliError(
                    f"Refused: the target's log holds {held[EVENTS_STREAM]:,} events; "
                    "restore needs an empty stack."
                )
            try:  # the whole backup is read and checked before anything is written
                _, contents = check(path)
            except (BackupError, OSError) as error:
                raise CliError(f"Refused: {error}") from error
            busy = sum(held.values())
            if busy and not force:
                raise CliError(
                    f"Refused: the target holds {busy:,} DLQ entries, keys or blobs; see --force."
                )
            with _progress_bar() as bar:
                steps = _Steps(bar, "restoring")
                try:
                    await restore(store.client, contents, timeout=store.timeout, progress=steps)
                except BackupError as error:
                    raise CliError(f"Restore failed: {error}") from error
                restored = time.monotonic() - started
                steps.verb = "rebuilding"
                for projector in PROJECTORS:
                    name = projector.name

                    def progress(done: int, aim: int, name: str = name) -> None:
                        steps(name, done, aim)

                    await rebuild(store, pool, projector, progress=progress)
            return len(contents[EVENTS_STREAM]), restored, time.monotonic() - started - restored

    events, restored, rebuilt = run(main())
    console.print(
        f"Restored {events:,} events from {path} in {restored:.1f}s; "
        f"rebuilt {len(PROJECTORS)} read models in {rebuilt:.1f}s."
    )
