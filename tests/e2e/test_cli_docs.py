"""Every `sutazai` command that README.md and docs/ show, run as a user types it.

Each documented command line (in a fenced code block, or an inline code span) runs as a
subprocess in an 80-column terminal, twice: against a `sutazai up` this module starts, and with
nothing running. Whatever happens, it prints its result or one line on stderr that says what is
wrong and what to do: never a traceback, no line wider than 80 columns (records for machines
aside, log lines and JSON lines: one record a line, whatever its length), and it exits 0 (done),
1 (a user error) or 2 (the platform is unavailable). Against the running platform every command
exits 0, bar the ones listed in EXPECTED_UP with why; with nothing running every command that
needs the platform exits 2.

A command documented later runs here with no change to this file. One that cannot run as it is
written (a placeholder with no value, a command that runs until Ctrl-C and is not listed in
FOREGROUND) fails here, saying what to add.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer.main
from rich.cells import cell_len
from uuid_utils.compat import uuid4

from runtime.cli import app
from runtime.servers.process import dies_with_owner, reclaim_recorded
from tests.servers import (
    SUTAZAI,
    cli_environment,
    free_port,
    isolated_settings,
    scratch_dir,
    start_up,
    wait_for_line,
)

pytestmark = pytest.mark.phase_timeout(600)

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
WIDTH = 80
DEADLINE = 240.0
"""Seconds a command may take (an answer from the model, on a loaded two-core machine)."""
STOP_DEADLINE = 30.0
"""Seconds a foreground command may take to stop on Ctrl-C (each part drains, bounded)."""
PARALLEL = 6

Words = tuple[str, ...]

NOT_RUN: dict[Words, str] = {
    ("up",): "it runs the platform until Ctrl-C: it is the `sutazai up` this module starts, "
    "checks and stops (test_sutazai_up_says_when_it_is_up_and_stops_on_ctrl_c), not a second one",
    ("up", "--cluster", "3"): "three NATS nodes on ports of their own: "
    "tests/e2e/test_cluster_up.py starts it, checks the replicas and stops it",
    ("schemas", "export"): "it writes schemas/published/ and docs/events.md in the source tree; "
    "`sutazai schemas export --check`, documented too, runs the same code and writes nothing",
}
"""Documented commands this module does not run as they are written, and why."""

FOREGROUND: dict[Words, str] = {
    ("events", "tail"): "",  # follows the log: running once it printed its first event
    ("agents", "run"): "Agents running",
    ("projections", "run"): "Projecting",
    ("gateway",): "GraphQL",
}
"""Commands that run until Ctrl-C, and what they print once running: then they get SIGINT,
as a user's Ctrl-C, and must stop by themselves with exit 0."""

PLACEHOLDERS: dict[str, str] = {"<task-id>": "task_id", "<id>": "task_id"}
"""Placeholders of the docs, and which value of the running platform stands in for each."""

EXTRA_ENV: dict[Words, str] = {
    ("gateway",): "SUTAZAI_GATEWAY_PORT",  # another replica listens on a port of its own
}
"""Settings a command is given as its user would: a free port, here."""

QDRANT_HELD = (
    2,
    "SUTAZAI_QDRANT_URL",
    "Qdrant's local mode belongs to the `sutazai up` process: another process that needs vectors "
    "(the gateway's searches, the document assistant) needs a Qdrant server (README); it says so",
)
EXPECTED_UP: dict[Words, tuple[int, str, str]] = {
    ("gateway",): QDRANT_HELD,
    ("agents", "run"): QDRANT_HELD,  # every agent: the document assistant too
    ("projections", "rebuild", "vectors"): QDRANT_HELD,  # writes the vectors
    ("restore", "sutazai-backup"): (
        1,
        "needs an empty stack",
        "a restore reproduces sequences, so it needs a stack whose log is empty; "
        "tests/integration/test_backup.py restores into one",
    ),
}
"""Command lines (exactly these words) that do not exit 0 against the running platform: the
exit code, what stderr says, and why."""

NEEDS_NOTHING: dict[Words, str] = {
    ("schemas",): "it reads the code and the checked-in files only",
}
"""Commands that exit 0 with nothing running, and why."""

ONE_ROW_A_LINE = {("status",), ("projections", "status")}
"""Tables read line by line (by eye and by scripts): no row folds onto a second line."""

FILES = {
    "docs/tides.md": "# Tides\n\nThe moon's gravity pulls the oceans into two bulges; the earth "
    "turns under them, so most coasts see two high tides a day.\n",
    "notes.md": "# Notes\n\nSpring tides come at new and full moon, neap tides in between.\n",
}
"""The files the documented commands name, in the directory they run in."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}")
_PLACEHOLDER = re.compile(r"<[^<>\s]+>")
_INLINE = re.compile(r"`((?:\.venv/bin/)?sutazai [^`]+)`")


@dataclass
class Documented:
    """A command line of the docs: its words after `sutazai`, and where it is written."""

    words: Words
    places: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        return shlex.join(["sutazai", *self.words])


def documented_commands() -> dict[Words, Documented]:
    """Every `sutazai …` command line in a code block or code span of the docs, once each."""
    found: dict[Words, Documented] = {}

    def add(text: str, place: str, *, comments: bool) -> None:
        words = tuple(shlex.split(text, comments=comments))
        words = words[1:]  # `sutazai` or `.venv/bin/sutazai`
        found.setdefault(words, Documented(words)).places.append(place)

    for document in DOCUMENTS:
        fenced = False
        pending = ""
        for number, line in enumerate(document.read_text().splitlines(), start=1):
            place = f"{document.relative_to(ROOT)}:{number}"
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                text = pending + line.strip()
                if text.endswith("\\"):  # a command continued on the next line
                    pending = text[:-1] + " "
                    continue
                pending = ""
                if re.match(r"(\.venv/bin/)?sutazai\s", text):
                    add(text, place, comments=True)
            else:
                for span in _INLINE.findall(line):
                    add(span, place, comments=False)
    return found


def _rule(table: Iterable[Words], words: Words) -> Words | None:
    """The longest key of `table` that `words` start with."""
    keys = [key for key in table if words[: len(key)] == key]
    return max(keys, key=len, default=None)


DOCUMENTED = documented_commands()
RUN = sorted(words for words in DOCUMENTED if words not in NOT_RUN)


@dataclass
class Outcome:
    """How a command ended, and what it printed."""

    command: str
    code: int | None
    stdout: str
    stderr: str
    note: str = ""
    seconds: float = 0.0

    def report(self) -> str:
        return (
            f"$ {self.command}\nexit {self.code} after {self.seconds:.1f}s {self.note}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


async def _run(words: Words, env: dict[str, str], cwd: Path) -> Outcome:
    """One command as a user runs it; a foreground one gets Ctrl-C once it says it runs."""
    ready = FOREGROUND.get(_rule(FOREGROUND, words) or ())
    command = shlex.join(["sutazai", *words])
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *dies_with_owner([SUTAZAI, *words]),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    out: list[str] = []
    running = asyncio.Event()

    async def read_out(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace")
            out.append(line)
            if ready is not None and ready in line:
                running.set()

    reading = asyncio.gather(read_out(process.stdout), process.stderr.read())
    ended = asyncio.create_task(process.wait())
    said = asyncio.create_task(running.wait())
    await asyncio.wait({ended, said}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
    note = ""
    if not ended.done():
        if said.done():
            note = "(stopped with Ctrl-C once running)"
            process.send_signal(signal.SIGINT)
        else:
            note = f"(killed: no end within {DEADLINE:g}s; if it runs until Ctrl-C: FOREGROUND)"
            process.kill()
        try:
            await asyncio.wait_for(asyncio.shield(ended), STOP_DEADLINE)
        except TimeoutError:
            note += f" (killed: Ctrl-C did not stop it within {STOP_DEADLINE:g}s)"
            process.kill()
        await ended
    said.cancel()
    _, err = await reading
    code = process.returncode if "killed" not in note else None
    seconds = time.monotonic() - started
    return Outcome(command, code, "".join(out), err.decode(errors="replace"), note, seconds)


def _fill(words: Words, values: Mapping[str, str]) -> Words | str:
    """The words with each placeholder's value; or what is missing, in words."""
    filled = []
    for word in words:
        for placeholder in _PLACEHOLDER.findall(word):
            if placeholder not in PLACEHOLDERS:
                return f"no value for {placeholder}: give it one in PLACEHOLDERS"
            word = word.replace(placeholder, values[PLACEHOLDERS[placeholder]])
        filled.append(word)
    return tuple(filled)


async def _run_all(
    env: dict[str, str], cwd: Path, values: Mapping[str, str]
) -> dict[Words, Outcome]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(words: Words) -> Outcome:
        filled = _fill(words, values)
        if isinstance(filled, str):
            return Outcome(DOCUMENTED[words].line, None, "", "", f"({filled})")
        extra = EXTRA_ENV.get(_rule(EXTRA_ENV, words) or ())
        own = {**env, extra: str(free_port())} if extra else env
        async with gate:
            return await _run(filled, own, cwd)

    outcomes = await asyncio.gather(*(one(words) for words in RUN))
    return dict(zip(RUN, outcomes, strict=True))


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A directory holding the files the documented commands name."""
    where = scratch_dir("sutazai-cli-docs-")
    for name, text in FILES.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(text)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


@dataclass
class UpOutcomes:
    """Every documented command's outcome against a running `sutazai up`, and up's own."""

    outcomes: dict[Words, Outcome]
    up: Outcome


class _Drain(threading.Thread):
    """Reads what `sutazai up` prints once it is up, so that it never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.lines: list[str] = []

    def run(self) -> None:
        assert self.process.stdout is not None
        self.lines.extend(self.process.stdout)


@pytest.fixture(scope="module")
async def against_up() -> AsyncIterator[UpOutcomes]:
    """`sutazai up` started as a user starts it, every command run against it, then Ctrl-C."""
    root = scratch_dir()
    env = {**cli_environment(isolated_settings(root)), "COLUMNS": str(WIDTH)}
    up = start_up(env, root)
    try:
        lines = await asyncio.to_thread(wait_for_line, up, "SutazAI is up", 120)
        drain = _Drain(up)
        drain.start()
        with _workdir() as cwd:
            submitted = await _run(("task", "submit", "--type", "test.docs"), env, cwd)
            assert submitted.code == 0, submitted.report()
            values = {"task_id": submitted.stdout.split()[1]}
            outcomes = await _run_all(env, cwd, values)
        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = await asyncio.to_thread(up.wait, 60)
        await asyncio.to_thread(drain.join, 10)
        printed = "".join(lines + drain.lines)
        yield UpOutcomes(outcomes, Outcome("sutazai up", code, printed, ""))
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        reclaim_recorded(root / "run")  # what a failed run left: servers in sessions of their own
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def with_nothing_running() -> dict[Words, Outcome]:
    """Every command run with nothing listening where the settings point."""
    root = scratch_dir()
    env = {**cli_environment(isolated_settings(root)), "COLUMNS": str(WIDTH)}
    try:
        with _workdir() as cwd:
            return await _run_all(env, cwd, {"task_id": str(uuid4())})
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _printed(text: str) -> list[str]:
    """The lines a person reads: records for machines (log lines, `--json` lines: one record
    each, whatever its length) left out."""
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    return [line for line in lines if line.strip() and not _is_record(line)]


def _is_record(line: str) -> bool:
    if _LOG_LINE.match(line):
        return True
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _check(outcome: Outcome, words: Words) -> None:
    """What holds for every command, whatever its exit: see the module's doc."""
    report = outcome.report()
    assert outcome.code in {0, 1, 2}, report
    assert "Traceback" not in outcome.stdout + outcome.stderr, report
    wide = [line for line in _printed(outcome.stdout + outcome.stderr) if cell_len(line) > WIDTH]
    assert not wide, f"wider than {WIDTH} columns: {wide}\n{report}"
    said = _printed(outcome.stderr)
    if outcome.code != 0:
        assert len(said) == 1, f"the error is not one line: {said}\n{report}"
        assert not said[0].startswith("Unexpected"), report  # every failure is foreseen
    if _rule(ONE_ROW_A_LINE, words):
        rows = [line for line in _printed(outcome.stdout) if line.startswith("│")]
        folded = [row for row in rows if not row.strip("│").split("│")[0].strip()]
        assert not folded, f"rows folded onto a second line: {folded}\n{report}"


@pytest.mark.parametrize("words", RUN, ids=[DOCUMENTED[w].line for w in RUN])
def test_documented_command_against_the_running_platform(
    words: Words, against_up: UpOutcomes
) -> None:
    outcome = against_up.outcomes[words]
    _check(outcome, words)
    code, says, _why = EXPECTED_UP.get(words, (0, "", ""))
    assert outcome.code == code, outcome.report()
    assert says in outcome.stderr, outcome.report()


@pytest.mark.parametrize("words", RUN, ids=[DOCUMENTED[w].line for w in RUN])
def test_documented_command_with_nothing_running(
    words: Words, with_nothing_running: dict[Words, Outcome]
) -> None:
    outcome = with_nothing_running[words]
    _check(outcome, words)
    if _rule(NEEDS_NOTHING, words):
        assert outcome.code == 0, outcome.report()
    else:
        assert outcome.code == 2, outcome.report()
        assert "not answer" in outcome.stderr, outcome.report()


def test_sutazai_up_says_when_it_is_up_and_stops_on_ctrl_c(against_up: UpOutcomes) -> None:
    up = against_up.up
    assert up.code == 0, up.report()
    assert "Traceback" not in up.stdout, up.report()
    assert "SutazAI is up" in up.stdout
    wide = [line for line in _printed(up.stdout) if cell_len(line) > WIDTH]
    assert not wide, f"wider than {WIDTH} columns: {wide}"


def _command_paths(group: object, path: Words = ()) -> list[Words]:
    commands: dict[str, object] = getattr(group, "commands", {})
    if not commands:
        return [path]
    return [leaf for name, sub in commands.items() for leaf in _command_paths(sub, (*path, name))]


def test_every_command_of_the_cli_is_documented_and_so_run_here() -> None:
    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) > 10, paths
    missing = [path for path in paths if not any(w[: len(path)] == path for w in DOCUMENTED)]
    assert not missing, f"not shown in README.md or docs/: {missing}"
    for words in NOT_RUN:
        assert words in DOCUMENTED, f"NOT_RUN lists {words}, which the docs no longer show"
