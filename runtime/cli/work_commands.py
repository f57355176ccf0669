"""`sutazai ask` and `sutazai ingest`: put questions and documents to the agents from a terminal.

Both go through the command dispatcher as the CLI (actor `cli:<login>`, kind `system`) on behalf
of an owner: `--owner`, or the local user's fixed id (the one `sutazai task submit` uses), so that
what `ingest` adds is what `ask` searches. They follow the outcome by folding the aggregates
from the log, so only NATS needs to answer (and the agents be running to do the work).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from commands.dispatch import CommandDispatcher, aggregate_id_for
from commands.loading import load_aggregate
from domain.aggregates import DOCUMENT, TASK
from domain.document import Document, DocumentStatus
from domain.task import Task, TaskStatus
from eventstore.store import EventStore
from runtime.cli.base import (
    CliError,
    Unavailable,
    app,
    connected_commands,
    console,
    errors,
    refusal,
    run,
)
from schemas.commands import CommandAccepted, CommandRequest
from schemas.envelope import Actor

_TASK_ENDS = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED_WITH_FAILURES,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
    }
)
_DOCUMENT_ENDS = frozenset(
    {DocumentStatus.INDEXED, DocumentStatus.INDEX_FAILED, DocumentStatus.REMOVED}
)
_MARKDOWN = frozenset({".md", ".markdown", ".mdown"})
_POLL_SECONDS = 0.3
_SNIFF_BYTES = 8_192

OwnerOption = Annotated[
    UUID | None,
    typer.Option(help="The user the work is for (default: this login's fixed CLI user id)."),
]


def cli_identity(owner: UUID | None) -> tuple[Actor, UUID]:
    """The CLI's actor, and the owner: given, or this login's fixed id."""
    login = getpass.getuser()
    return Actor(id=f"cli:{login}", kind="system"), owner or aggregate_id_for(f"local-user:{login}")


# --- ask --------------------------------------------------------------------------------------


async def _follow_task(store: EventStore, task_id: UUID, timeout: float) -> Task | None:
    """The task once it ended, or None if it did not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with console.status("Submitted; waiting for an agent…") as status:
        while time.monotonic() < deadline:
            task = (await load_aggregate(store, TASK, task_id)).state
            if isinstance(task, Task):
                if task.status in _TASK_ENDS:
                    return task
                status.update(_task_status_line(task))
            await asyncio.sleep(_POLL_SECONDS)
    return None


def _task_status_line(task: Task) -> str:
    if task.status is TaskStatus.PENDING:
        return "Waiting for an agent that can answer (rag.ask)…"
    if task.status is TaskStatus.ASSIGNED:
        return "An agent took the question…"
    return f"Reading the documents and answering (attempt {task.attempts})…"


async def _titles(store: EventStore, document_ids: set[UUID]) -> dict[UUID, str]:
    titles = {}
    for document_id in document_ids:
        document = (await load_aggregate(store, DOCUMENT, document_id)).state
        titles[document_id] = document.title if isinstance(document, Document) else "(unknown)"
    return titles


def _citations_table(citations: list[dict[str, Any]], titles: dict[UUID, str]) -> Table:
    table = Table(title="Citations")
    for column in ("#", "document", "document id", "chunk", "score"):
        table.add_column(column, overflow="fold")
    for number, citation in enumerate(citations, start=1):
        document_id = UUID(str(citation["document_id"]))
        score = citation.get("score")
        table.add_row(
            str(number),
            escape(titles.get(document_id, "(unknown)")),
            str(document_id),
            str(citation.get("chunk_index", "-")),
            f"{score:.3f}" if isinstance(score, int | float) else "-",
        )
    return table


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to ask of your documents.")],
    owner: OwnerOption = None,
    priority: Annotated[int, typer.Option(min=1, max=10, help="1 is the highest.")] = 5,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the answer before giving up.")
    ] = 300.0,
) -> None:
    """Ask a question of your documents (a rag.ask task) and print the answer with citations."""
    if not question.strip():
        raise CliError("The question is empty.")
    actor, owner_id = cli_identity(owner)
    request = CommandRequest(
        actor=actor,
        reason="sutazai ask",
        payload={
            "owner_id": str(owner_id),
            "task_type": "rag.ask",
            "priority": priority,
            "payload": {"question": question},
        },
    )

    async def main() -> None:
        async with connected_commands() as commands:
            reply = await commands.dispatch("SubmitTask", request)
            if not isinstance(reply, CommandAccepted):
                raise CliError(f"The question was {refusal(reply)}")
            store = commands.bus.store
            task = await _follow_task(store, reply.aggregate_id, timeout)
            if task is None:
                raise Unavailable(
                    f"No answer within {timeout:g} s; the task goes on: "
                    f"`sutazai task show {reply.aggregate_id}`."
                )
            if task.status is not TaskStatus.COMPLETED:
                why = f": {task.error.code}: {task.error.message}" if task.error else ""
                raise CliError(f"The question was not answered ({task.status}){why}")
            result = task.result or {}
            answer = str(result.get("answer") or "").strip() or "(the model gave no answer)"
            console.print(Panel(escape(answer), title="Answer", title_align="left"))
            cited = result.get("citations")
            citations = [c for c in cited if isinstance(c, dict)] if isinstance(cited, list) else []
            if not citations:
                console.print(
                    "No document was cited: none of yours matched (add some with `sutazai ingest`)."
                )
                return
            titles = await _titles(store, {UUID(str(c["document_id"])) for c in citations})
            console.print(_citations_table(citations, titles))

    run(main())


# --- ingest -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFile:
    """A file to add as a document."""

    path: Path
    text: str

    @property
    def media_type(self) -> str:
        """Markdown by its extension, else plain text."""
        return "text/markdown" if self.path.suffix.lower() in _MARKDOWN else "text/plain"


def _files_under(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Every file named or under a named directory (sorted, hidden ones left out), and problems."""
    found: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return found, problems


def read_text_file(path: Path) -> TextFile | str:
    """The file's text, or why it is skipped (binary, not UTF-8, empty, unreadable)."""
    try:
        body = path.read_bytes()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if b"\x00" in body[:_SNIFF_BYTES]:
        return "binary, not text"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text (binary?)"
    if not text.strip():
        return "empty"
    return TextFile(path, text)


def _ingest_command_id(owner_id: UUID, file: TextFile) -> str:
    """The same owner, title and text give the same command: ingesting twice adds once."""
    digest = hashlib.sha256(f"{owner_id}\n{file.path.name}\n{file.text}".encode()).hexdigest()
    return f"ingest.{digest[:48]}"


@dataclass
class Ingested:
    """What became of the files."""

    added: dict[UUID, str]
    """Document id -> title, new or already there."""
    failed: int = 0


def _progress() -> Progress:
    """A spinner, what is being done, a bar and done/total: how ingest shows its two stages."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
    )


async def _add_all(
    commands: CommandDispatcher, files: list[Path], actor: Actor, owner_id: UUID
) -> Ingested:
    outcome = Ingested(added={})
    with _progress() as progress:
        adding = progress.add_task("Adding documents", total=len(files))
        for path in files:
            progress.update(adding, description=f"Adding {escape(path.name)}")
            read = read_text_file(path)
            if isinstance(read, str):
                progress.console.print(f"[yellow]skipped[/] {escape(str(path))}: {read}")
                progress.advance(adding)
                continue
            request = CommandRequest(
                command_id=_ingest_command_id(owner_id, read),
                actor=actor,
                reason=f"sutazai ingest {path.name}",
                payload={
                    "owner_id": str(owner_id),
                    "title": path.name[:500],
                    "content": read.text,
                    "metadata": {"source": str(path.resolve()), "media_type": read.media_type},
                },
            )
            reply = await commands.dispatch("AddDocument", request)
            if isinstance(reply, CommandAccepted):
                outcome.added[reply.aggregate_id] = path.name
                again = " (already added: unchanged)" if reply.duplicate else ""
                progress.console.print(
                    f"[green]added[/] {escape(str(path))} as {reply.aggregate_id}{again}"
                )
            else:
                outcome.failed += 1
                progress.console.print(
                    f"[red]not added[/] {escape(str(path))}: {escape(refusal(reply))}"
                )
            progress.advance(adding)
    return outcome


async def _wait_indexed(store: EventStore, documents: dict[UUID, str], timeout: float) -> int:
    """Wait until every document is indexed (or failed); returns how many did not get indexed."""
    deadline = time.monotonic() + timeout
    waiting = dict(documents)
    not_indexed = 0
    with _progress() as progress:
        indexing = progress.add_task("Indexing", total=len(documents))
        while waiting and time.monotonic() < deadline:
            for document_id, title in list(waiting.items()):
                document = (await load_aggregate(store, DOCUMENT, document_id)).state
                if not isinstance(document, Document) or document.status not in _DOCUMENT_ENDS:
                    continue
                del waiting[document_id]
                progress.advance(indexing)
                if document.status is DocumentStatus.INDEXED:
                    progress.console.print(
                        f"[green]indexed[/] {escape(title)}: {document.chunk_count} chunk(s)"
                    )
                else:
                    not_indexed += 1
                    why = f": {document.error.message}" if document.error else ""
                    progress.console.print(
                        f"[red]not indexed[/] {escape(title)} ({document.status}){escape(why)}"
                    )
            if waiting:
                await asyncio.sleep(_POLL_SECONDS)
    for title in waiting.values():
        errors.print(
            f"[red]not indexed within {timeout:g} s:[/] {escape(title)} "
            "(is the document assistant running? `sutazai agents list`)"
        )
    return not_indexed + len(waiting)


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Text or Markdown files, or directories of them.")
    ],
    owner: OwnerOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until each document is indexed.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="With --wait: seconds to wait for the indexing.")
    ] = 300.0,
) -> None:
    """Add text and Markdown files as documents (binary files are skipped, with a message)."""
    files, problems = _files_under(paths)
    for problem in problems:
        errors.print(f"[red]{escape(problem)}[/]")
    if not files:
        raise CliError("No file to ingest.")
    actor, owner_id = cli_identity(owner)

    async def main() -> int:
        async with connected_commands() as commands:
            ingested = await _add_all(commands, files, actor, owner_id)
            console.print(
                f"{len(ingested.added)} document(s) added for owner {owner_id}"
                + (f", {ingested.failed} refused" if ingested.failed else "")
                + "."
            )
            failures = ingested.failed
            if wait and ingested.added:
                failures += await _wait_indexed(commands.bus.store, ingested.added, timeout)
            return failures + len(problems)

    failures = run(main())
    if failures:
        raise CliError(f"{failures} file(s) not ingested or not indexed: see why above.")
