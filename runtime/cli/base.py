"""The `sutazai` app, its command groups, and what every command shares.

Every command ends in one of three ways, decided in one place (`SutazaiGroup.main`):

| exit | meaning |
|---|---|
| 0 | done: the result is on stdout |
| 1 | a user error: a bad argument, a refused command, something asked for that is not there |
| 2 | unavailable: the platform, or a server the command needs, does not answer |
| 130 | interrupted by Ctrl-C before it was done (one that runs until Ctrl-C stops and exits 0) |

A failure is one line on stderr that says what is wrong and what to do; never a traceback
(`SUTAZAI_LOG_LEVEL=debug` lets an unexpected error's traceback through, for a bug report).
Commands connect only to
what they use: the event and task commands to NATS, the read side to PostgreSQL as well, and
only the long-running parts (`agents run`, `projections run`, `gateway`) to the whole platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import nats.errors
import pydantic
import redis.exceptions
import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from commands.dispatch import CommandDispatcher
from eventstore.errors import EventStoreError, StoreUnavailable
from runtime.bootstrap import Platform, connect, connect_read_side, connect_store
from runtime.readiness import PartsNotReady
from runtime.servers import Server
from runtime.servers.errors import ServerError
from runtime.settings import Settings
from runtime.stack import Stack
from runtime.structured_logging import configure_logging
from schemas.commands import CommandRefused

OK = 0
USER_ERROR = 1
UNAVAILABLE = 2


class CliError(Exception):
    """A failure a command explains in one line (plain text); `code` is the exit code."""

    code = USER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unavailable(CliError):
    """The platform, or a server a command needs, does not answer."""

    code = UNAVAILABLE


console = Console()
errors = Console(stderr=True)
T = TypeVar("T")

_settings: Settings | None = None
"""The settings of the command running (`read_settings`)."""
_debug = False
"""Whether an unexpected error shows its traceback (SUTAZAI_LOG_LEVEL=debug)."""


class SutazaiGroup(TyperGroup):
    """The top-level group: runs the command and turns whatever it raised into an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        global _settings
        _settings = None  # each run reads them afresh (several runs share a process in tests)
        try:
            outcome = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = outcome if isinstance(outcome, int) else OK
        except Exception as error:
            failure = explain(error)
            if failure is None:
                if _debug:
                    raise
                failure = CliError(
                    f"Unexpected {type(error).__name__}: {_one_line(str(error))} "
                    "(SUTAZAI_LOG_LEVEL=debug shows where; please report it)"
                )
            if failure.message:
                errors.print(Text(failure.message, style="red"), soft_wrap=True)
            code = failure.code
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    name="sutazai",
    help="SutazAI: AI agents on local models, over an event-sourced NATS JetStream core.",
    no_args_is_help=True,
    add_completion=False,
    cls=SutazaiGroup,
    pretty_exceptions_enable=False,
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


_LABELS = {
    "nats": ("NATS", "SUTAZAI_NATS_URL"),
    "postgres": ("PostgreSQL", "SUTAZAI_POSTGRES_URL"),
    "redis": ("Redis", "SUTAZAI_REDIS_URL"),
    "graph": ("The graph store", "SUTAZAI_GRAPH_URL"),
    "model": ("The model server", "OLLAMA_HOST"),
}


def _kind(server: Server) -> str:
    return server.name.split("-")[0]  # the nodes of a NATS cluster are nats-1, nats-2, …


def _label(kind: str) -> tuple[str, str]:
    """What to call a server, and the setting that points at an external one."""
    return _LABELS.get(kind, (kind, f"SUTAZAI_{kind.upper()}_URL"))


def servers_of(stack: Stack, kind: str) -> list[Server]:
    """The server of a kind (`nats`, `postgres`, …), or every node of a cluster of them."""
    return [server for server in stack if _kind(server) == kind]


def what_to_do(server: Server) -> str:
    """How to bring a server back: start the platform, or check the URL of an external one."""
    return "run `sutazai up`" if server.embedded else f"check {_label(_kind(server))[1]}"


def _where(url: str) -> str:
    try:
        address = urlsplit(url)
        return f"{address.hostname}:{address.port}" if address.port else url
    except ValueError:  # not a URL as urllib reads them: as it is
        return url


def not_answering(servers: Sequence[Server]) -> Unavailable:
    """The one line for a server (or cluster) that does not answer: which, where, what to do."""
    first = servers[0]
    more = f" (and {len(servers) - 1} more)" if len(servers) > 1 else ""
    label = _label(_kind(first))[0]
    return Unavailable(
        f"{label} at {_where(first.url)}{more} does not answer; {what_to_do(first)}."
    )


CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError and nats' timeouts are OSErrors too
    nats.errors.Error,
    StoreUnavailable,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    redis.exceptions.ConnectionError,
)
"""What reaching a server that is down, starting or gone raises."""


@contextlib.contextmanager
def reaching(stack: Stack, kind: str) -> Iterator[None]:
    """Connecting to the servers of a kind: a failure to reach them is said as such."""
    try:
        yield
    except CONNECTION_ERRORS as error:
        raise not_answering(servers_of(stack, kind)) from error


def explain(error: BaseException) -> CliError | None:
    """The one line and exit code for an error; None for one nobody expected (a bug)."""
    if isinstance(error, CliError):
        return error
    if isinstance(error, BaseExceptionGroup):
        found = [explain(inner) for inner in error.exceptions]
        return next((failure for failure in found if failure is not None), None)
    if type(error).__name__ == "NoArgsIsHelpError":
        return CliError("")  # a group without its command: the help is printed already
    if isinstance(error, typer.TyperException):  # a usage error: a bad option or argument
        context = getattr(error, "ctx", None)
        path = getattr(context, "command_path", "sutazai")
        return CliError(f"{_one_line(error.format_message()).rstrip('.')}; see `{path} --help`.")
    if isinstance(error, typer.Abort):
        return CliError("Aborted.")
    if isinstance(error, pydantic.ValidationError) and error.title == Settings.__name__:
        wrong = "; ".join(
            f"SUTAZAI_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        return CliError(f"A setting is invalid: {wrong}.")
    if isinstance(error, ServerError):
        return CliError(f"Could not start {error.server}: {_one_line(str(error))}")
    if isinstance(error, PartsNotReady):
        return Unavailable(f"The platform did not come up: {error}; see the logs above.")
    if isinstance(error, RuntimeError) and _held_by_another_process(error):
        return Unavailable(
            "Another process (`sutazai up`?) holds Qdrant's files; set SUTAZAI_QDRANT_URL."
        )
    if isinstance(error, StoreUnavailable | nats.errors.Error):
        return Unavailable(f"NATS stopped answering ({_reason(error)}); see `sutazai status`.")
    if isinstance(error, EventStoreError):
        return CliError(f"{type(error).__name__}: {_one_line(str(error))}")
    if isinstance(error, CONNECTION_ERRORS):
        return Unavailable(f"A server stopped answering ({_reason(error)}); see `sutazai status`.")
    return None


def _reason(error: BaseException) -> str:
    text = _one_line(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _held_by_another_process(error: RuntimeError) -> bool:
    """Qdrant's local mode refusing storage that another process has locked (portalocker)."""
    return type(error.__context__).__module__.startswith("portalocker")


def read_settings(*, foreground: bool = False) -> Settings:
    """The settings, read once per command, and logging set up.

    A command that prints its result logs warnings only (its output says what happened) unless
    SUTAZAI_LOG_LEVEL asks for more; one that runs in the foreground (`up`, `agents run`,
    `projections run`, `gateway`) logs at the configured level, info by default.
    """
    global _settings, _debug
    if _settings is None:
        settings = Settings()
        explicit = "log_level" in settings.model_fields_set
        level = settings.log_level if foreground or explicit else "warning"
        configure_logging(fmt=settings.log_format, level=level)
        _debug = settings.log_level.lower() == "debug"
        _settings = settings
    return _settings


def refusal(reply: CommandRefused) -> str:
    """A refused command in one line: its code, message and the fields at fault."""
    fields = "; ".join(f"{f.field}: {f.message}" for f in reply.error.fields)
    return f"refused ({reply.error.code}): {reply.error.message}" + (
        f" ({fields})" if fields else ""
    )


@contextlib.asynccontextmanager
async def connected_commands() -> AsyncIterator[CommandDispatcher]:
    """The event store and the command bus: NATS only."""
    settings = read_settings()
    stack = Stack(settings)
    async with contextlib.AsyncExitStack() as opened:
        with reaching(stack, "nats"):
            commands = await opened.enter_async_context(connect_store(settings, stack))
        yield commands


@contextlib.asynccontextmanager
async def connected_read_side() -> AsyncIterator[tuple[CommandDispatcher, asyncpg.Pool]]:
    """The event store and the read side's database: NATS and PostgreSQL, nothing else."""
    settings = read_settings()
    stack = Stack(settings)
    async with contextlib.AsyncExitStack() as opened:
        with reaching(stack, "nats"):
            commands = await opened.enter_async_context(connect_store(settings, stack))
        with reaching(stack, "postgres"):
            pool = await opened.enter_async_context(connect_read_side(settings, stack))
        yield commands, pool


def without_vectors(settings: Settings) -> Settings:
    """The settings for a process that never touches the vector store: an in-memory Qdrant that
    stays empty, so it opens no local files (only one process may hold those)."""
    return settings.model_copy(update={"qdrant_url": None, "qdrant_location": ":memory:"})


_PLATFORM_SERVERS = ("nats", "postgres", "redis", "graph")
"""What `connect` opens a client on (the model server is reached per call)."""


@contextlib.asynccontextmanager
async def connected_platform(
    settings: Settings, *, part: str = "platform"
) -> AsyncIterator[Platform]:
    """Every client a long-running part needs; a server that is down is named first."""
    stack = Stack(settings)

    async def answers(server: Server) -> bool:
        try:
            await asyncio.wait_for(server.check(), timeout=settings.store_timeout)
        except Exception:
            return False
        return True

    # With Neo4j for the graph, the embedded FalkorDB is neither started nor needed.
    needed = [k for k in _PLATFORM_SERVERS if not (k == "graph" and settings.neo4j_url)]
    kinds = [servers_of(stack, kind) for kind in needed]
    answered = await asyncio.gather(*(answers(s) for servers in kinds for s in servers))
    for servers in kinds:  # one node of a cluster answering is enough
        if not any(answered[: len(servers)]):
            raise not_answering(servers)
        answered = answered[len(servers) :]
    async with connect(settings, stack, part=part) as platform:
        yield platform


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's work; what it raises is explained by the app (see the module doc)."""
    return asyncio.run(work)


def run_with_commands(work: Callable[[CommandDispatcher], Awaitable[T]]) -> T:
    """Run `work` with the command dispatcher (NATS only)."""

    async def main() -> T:
        async with connected_commands() as commands:
            return await work(commands)

    return run(main())


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
