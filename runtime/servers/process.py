"""A server run as a child process in its own process group, health-checked with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import structlog

from runtime.servers.errors import ServerStartError

log = structlog.get_logger(__name__)

Probe = Callable[[], Awaitable[None]]
"""One health check: returns when the server answers, raises when it does not (yet)."""

_PROBE_INTERVAL = 0.05
_PROBE_TIMEOUT = 2.0


def dies_with_owner(argv: Sequence[str]) -> list[str]:
    """`argv` run so that the kernel SIGKILLs it when the process that started it dies.

    util-linux's `setpriv --pdeathsig` (Essential on Debian, so on every machine we run on) sets
    the parent-death signal and then execs the server in place, keeping its pid: no
    `preexec_fn`, which is unsafe in a process with threads. SIGKILL rather than the server's
    own stop signal: an owner that died has crashed, every server is crash-safe on its data, and
    a graceful signal that hangs would have nobody left to escalate it. The signal follows the
    *thread* that forked the child, so servers are spawned from the event loop's thread, which
    lives as long as its owner.
    """
    setpriv = shutil.which("setpriv", path=f"{os.environ.get('PATH', '')}:/usr/bin")
    if setpriv is None:  # not Linux with util-linux: the pid files are the only safety net
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def _started_at(pid: int) -> float | None:
    """When process `pid` started (with the pid, what tells one process from a reused pid)."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


async def wait_until_healthy(
    name: str,
    probe: Probe,
    *,
    timeout: float,
    log_path: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Probe until the server answers; fail naming it (and its log) at the deadline or on exit."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    where = f"; see its log {log_path}" if log_path else ""
    while True:
        if process is not None and process.poll() is not None:
            raise ServerStartError(
                name,
                f"{name} exited with code {process.returncode} before it became healthy{where}",
                log_tail=tail(log_path) if log_path else "",
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerStartError(
                name,
                f"{name} did not become healthy within {timeout:g}s "
                f"(last error: {last_error!r}){where}",
                log_tail=tail(log_path) if log_path else "",
            )
        try:
            await asyncio.wait_for(probe(), timeout=min(_PROBE_TIMEOUT, remaining))
            return
        except Exception as error:  # any failure of a probe means "not yet"
            last_error = error
        await asyncio.sleep(_PROBE_INTERVAL)


def _kill_tree(leader: int, *, adopted: bool = False) -> None:
    """SIGKILL a leader's process group and every descendant, then wait until they are gone.

    Descendants count because some servers move their workers into sessions of their own
    (PostgreSQL's backends call setsid): the leader's group alone can leave them running for a
    while, holding the shared memory that a restarted server refuses to share. `adopted` is a leader
    that is not our child (left by an earlier run): we wait for it too, its parent reaps it.
    """
    doomed: list[psutil.Process] = []
    try:
        leader_process = psutil.Process(leader)
        doomed = leader_process.children(recursive=True)
        if adopted:
            doomed.append(leader_process)
    except psutil.NoSuchProcess:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    for process in doomed:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(doomed, timeout=5)


@dataclass
class ServerProcess:
    """One child process in a session of its own, stopped and killed by its process group.

    `run_as` names the OS user to run it as (PostgreSQL refuses to run as root).
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    pid_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    run_as: str | None = None
    cwd: Path | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        """The leader's pid (equal to its process group id) while running."""
        return self._popen.pid if self._popen is not None else None

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The running child, if any."""
        return self._popen

    def running(self) -> bool:
        """Whether the leader process is alive."""
        return self._popen is not None and self._popen.poll() is None

    def spawn(self) -> None:
        """Start the process in a new session, output appended to its log file."""
        if self.running():
            return
        self.reclaim_stale()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._popen = subprocess.Popen(
                dies_with_owner(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.run_as,
                cwd=self.cwd,
            )
        pid = self._popen.pid
        self.pid_path.write_text(f"{pid}\n{_started_at(pid)}\n{self.argv[0]}\n")
        log.info("server.spawned", server=self.name, pid=self._popen.pid, log=str(self.log_path))

    async def stop(self, timeout: float) -> None:
        """Ask the group to stop with the server's own signal; kill it at the deadline."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            self._signal_group(popen.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(popen.wait, timeout)
        # Whatever of the group outlived its leader goes too.
        _kill_tree(popen.pid)
        popen.wait()
        self._popen = None
        self.pid_path.unlink(missing_ok=True)
        log.info("server.stopped", server=self.name)

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash would; keep the data."""
        popen = self._popen
        if popen is None:
            return
        _kill_tree(popen.pid)
        popen.wait()
        self._popen = None
        log.warning("server.killed", server=self.name)

    def reclaim_stale(self) -> None:
        """End a group this data dir's earlier run left behind (recorded in its pid file).

        Only the very process recorded is touched, known by its pid *and* its start time: a
        reused pid belonging to something else is left alone. (Matching the command line failed
        for Redis, which rewrites its process title.)
        """
        try:
            pid_text, started_text = self.pid_path.read_text().splitlines()[:2]
            pid, started = int(pid_text), float(started_text)
        except (OSError, ValueError):
            self.pid_path.unlink(missing_ok=True)
            return
        if _started_at(pid) == started:
            log.warning("server.reclaiming_stale", server=self.name, pid=pid)
            _kill_tree(pid, adopted=True)
        self.pid_path.unlink(missing_ok=True)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def reclaim_recorded(run_dir: Path) -> None:
    """End every server group a run recorded under `run_dir` (a run that was killed)."""
    for pid_path in sorted(run_dir.glob("*.pid")):
        ServerProcess(
            name=pid_path.stem, argv=[], log_path=Path(os.devnull), pid_path=pid_path
        ).reclaim_stale()
