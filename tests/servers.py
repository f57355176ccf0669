"""Helpers for tests that run the real servers: free ports, scratch dirs, settings."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from uuid_utils.compat import uuid4

from runtime.servers.base import ServerOptions
from runtime.servers.nats import NatsServer
from runtime.servers.process import dies_with_owner, reclaim_recorded
from runtime.settings import Settings

LISTEN_PORTS = range(20_000, 32_768)
"""Where test servers listen: below Linux's ephemeral range (32768-60999), so no outgoing
connection can take a port between the moment it is chosen and the moment a server binds it."""

_given: set[int] = set()
"""Ports handed out in this run: never twice, even once their first server has let go."""


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_run(count: int) -> int:
    """The first of `count` consecutive loopback ports that are free now and new to this run."""
    for _ in range(1_000):
        first = random.randrange(LISTEN_PORTS.start, LISTEN_PORTS.stop - count)
        ports = range(first, first + count)
        if any(port in _given for port in ports) or not all(map(_bindable, ports)):
            continue
        _given.update(ports)
        return first
    raise RuntimeError(f"no {count} consecutive free ports on loopback")


def free_port() -> int:
    """A loopback port nothing listens on now, new to this run."""
    return free_port_run(1)


_RUN_ROOT = Path(tempfile.gettempdir()) / f"sutazai-tests-{os.getpid()}"
"""Every scratch dir of this test run lies under here, so the run's end finds every server."""


def scratch_dir(prefix: str = "sutazai-test-") -> Path:
    """A temp dir the `postgres` user can enter (pytest's own tmp root is mode 700)."""
    _RUN_ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chmod(_RUN_ROOT, 0o755)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=_RUN_ROOT))
    os.chmod(path, 0o755)
    return path


@asynccontextmanager
async def own_nats(sync: str = "always") -> AsyncIterator[NatsServer]:
    """A nats-server of its own on free ports (data in a scratch dir, `sync` its sync setting),
    stopped and its data removed after: for tests that must not touch the session's log."""
    root = scratch_dir()
    server = NatsServer(
        ServerOptions(root=root, startup_timeout=20, stop_timeout=5),
        port=free_port(),
        monitor_port=free_port(),
        sync=sync,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)


def stop_every_server_of_the_run() -> list[str]:
    """End every server group any stack of this run recorded and did not stop; remove the scratch
    dirs. Returns the pid files it found (each one a server that was left running)."""
    left = sorted(str(path) for path in _RUN_ROOT.glob("**/run/*.pid"))
    for run_dir in {Path(path).parent for path in left}:
        reclaim_recorded(run_dir)
    shutil.rmtree(_RUN_ROOT, ignore_errors=True)
    return left


def isolated_settings(root: Path, **overrides: object) -> Settings:
    """Settings for a stack of its own: data under `root`, every port free, no .env read."""
    values: dict[str, object] = {
        "data_dir": root,
        "nats_port": free_port(),
        "nats_monitor_port": free_port(),
        "postgres_port": free_port(),
        "redis_port": free_port(),
        "graph_port": free_port(),
        "model_port": free_port(),
        "qdrant_location": ":memory:",
        "gateway_port": free_port(),
        "startup_timeout": 30.0,
        "stop_timeout": 10.0,
        # A test's client runs in its gateway's event loop (hypothesis draws its examples there
        # too), so the loop's lateness is the test's own work, not a queue of requests: shedding
        # on it is tested by itself (test_gateway_surface), and benches restore the default.
        "gateway_max_loop_lag": 5.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


SUTAZAI = str(Path(sys.executable).parent / "sutazai")


def cli_environment(settings: Settings) -> dict[str, str]:
    """The environment that points the `sutazai` command at a test stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUTAZAI_")}
    env.update(
        {
            "SUTAZAI_DATA_DIR": str(settings.data_dir),
            "SUTAZAI_NATS_PORT": str(settings.nats_port),
            "SUTAZAI_NATS_MONITOR_PORT": str(settings.nats_monitor_port),
            "SUTAZAI_NATS_ROUTE_PORT": str(settings.nats_route_port),
            "SUTAZAI_POSTGRES_PORT": str(settings.postgres_port),
            "SUTAZAI_REDIS_PORT": str(settings.redis_port),
            "SUTAZAI_GRAPH_PORT": str(settings.graph_port),
            "SUTAZAI_MODEL_PORT": str(settings.model_port),
            "SUTAZAI_GATEWAY_PORT": str(settings.gateway_port),
            "COLUMNS": "200",
        }
    )
    return env


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    """Read a process's output until a line holds `text`; the lines read. Fails naming what it
    printed when the text never comes."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"never printed {text!r}; printed:\n{''.join(seen)}")


async def finished(
    command: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """Run `command` to its end without blocking the loop: exit code, stdout, stderr (killed,
    and TimeoutError, past `timeout`)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def sutazai_process(
    env: dict[str, str], *args: str, output: int | None = subprocess.PIPE
) -> subprocess.Popen[str]:
    """`sutazai ARGS...` as a process of its own (its own session, so a test can SIGKILL its
    group like a crash; it dies with the test run). Output is piped unless told otherwise."""
    return subprocess.Popen(
        dies_with_owner([SUTAZAI, *args]),
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output == subprocess.PIPE else output,
        text=True,
        start_new_session=True,
    )


def run_sutazai(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`sutazai ARGS...` run to its end, its output captured as text."""
    return subprocess.run(
        [SUTAZAI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def crash(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process's group, as a crash would take it down, and reap it."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def doomed_agent(settings: Settings, agent: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """One replica of `agent` in a process of its own, heartbeating every half second, so that
    `crash` takes it down mid-work like a crash would. Yields the process and the name its card
    goes online under; crashes it on the way out if it still runs."""
    replica = f"doomed{uuid4().hex[:6]}"
    env = {**cli_environment(settings), "SUTAZAI_HEARTBEAT_SECONDS": "0.5"}
    process = sutazai_process(
        env, "agents", "run", "--only", agent, "--replica", replica, output=subprocess.DEVNULL
    )
    try:
        yield process, f"{agent}-{replica}"
    finally:
        if process.poll() is None:
            crash(process)


def start_up(env: dict[str, str], root: Path) -> subprocess.Popen[str]:
    """`sutazai up` as a user starts it (its own session; it dies with the test run)."""
    return subprocess.Popen(
        dies_with_owner([SUTAZAI, "up"]),
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
