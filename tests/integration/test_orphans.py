"""No server outlives its owner: SIGKILL or os._exit of whoever started a stack takes the servers
with it, and the next `sutazai up` on the same data comes up with every acknowledged event."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from runtime.stack import Stack
from tests.servers import (
    cli_environment,
    isolated_settings,
    run_sutazai,
    start_up,
    wait_for_line,
)

GONE_WITHIN = 5.0
"""Seconds the issue allows a server to outlive its owner."""


def server_family(root: Path) -> list[psutil.Process]:
    """Every process of every server a stack under `root` recorded: leaders and descendants."""
    family: list[psutil.Process] = []
    for pid_file in sorted((root / "run").glob("*.pid")):
        leader = psutil.Process(int(pid_file.read_text().split()[0]))
        family += [leader, *leader.children(recursive=True)]
    return family


def survivors(family: list[psutil.Process], within: float) -> list[str]:
    """Which of `family` still live after `within` seconds (a zombie has ended: it holds
    nothing but its entry in the process table)."""
    deadline = time.monotonic() + within
    alive = family
    while True:
        alive = [p for p in alive if _lives(p)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return [f"{p.pid} {p.name()}" for p in alive if _lives(p)]


def _lives(process: psutil.Process) -> bool:
    """Running and not a zombie; a process that ends between the two looks is gone."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


OWNER = """
import asyncio, json, os, sys
from pathlib import Path
from runtime.stack import Stack
from tests.servers import isolated_settings, wait_for_line

async def main() -> None:
    stack = Stack(isolated_settings(Path(sys.argv[1]), ollama_host=sys.argv[2]))
    await stack.start()
    print("PIDS", json.dumps({s.name: s.pid for s in stack if s.embedded}), flush=True)
    if sys.stdin.readline().strip() == "exit":
        os._exit(1)  # no finally, no atexit: as abrupt as a crash

asyncio.run(main())
"""


@pytest.mark.parametrize("death", ["SIGKILL", "os._exit"])
def test_servers_die_with_the_process_that_owns_the_stack(
    stack: Stack, own_root: Path, death: str
) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(own_root), stack.model_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert owner.stdout is not None
    assert owner.stdin is not None
    lines = iter(owner.stdout.readline, "")
    pids = json.loads(next(line for line in lines if line.startswith("PIDS "))[5:])
    assert set(pids) == {"nats", "postgres", "redis", "graph"}
    family = server_family(own_root)
    assert len(family) > len(pids), "PostgreSQL's workers count too"
    if death == "SIGKILL":
        owner.kill()
    else:
        owner.stdin.write("exit\n")
        owner.stdin.flush()
    owner.wait(timeout=10)
    assert survivors(family, GONE_WITHIN) == []


def test_a_killed_up_takes_its_servers_along_and_the_next_up_has_every_event(
    own_root: Path,
) -> None:
    root = own_root
    env = cli_environment(isolated_settings(root))
    runs: list[subprocess.Popen[str]] = []
    try:
        runs.append(first := start_up(env, root))
        wait_for_line(first, "SutazAI is up", timeout=120)
        acknowledged = []
        for _ in range(3):
            submitted = run_sutazai(env, "task", "submit", "--type", "test.explain", cwd=root)
            assert submitted.returncode == 0, submitted.stderr
            acknowledged.append(submitted.stdout.split()[1])
        family = server_family(root)
        assert {p.pid for p in family} >= {
            int(f.read_text().split()[0]) for f in (root / "run").glob("*.pid")
        }

        first.kill()  # the owner only, as the OOM killer or a lost terminal session would
        first.wait(timeout=10)
        assert survivors(family, GONE_WITHIN) == []

        # Stale pid files, postmaster.pid and the NATS store are all still on disk.
        assert (root / "run" / "postgres.pid").exists()
        runs.append(second := start_up(env, root))
        wait_for_line(second, "SutazAI is up", timeout=120)
        for task_id in acknowledged:
            shown = run_sutazai(env, "task", "show", task_id, cwd=root)
            assert shown.returncode == 0, shown.stdout + shown.stderr
            assert "test.explain" in shown.stdout

        family = server_family(root)
        second.send_signal(signal.SIGTERM)  # what a service manager sends
        assert second.wait(timeout=60) == 0
        assert survivors(family, 0) == []
        assert not list((root / "run").glob("*.pid"))
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()


async def test_a_start_reclaims_the_servers_an_earlier_run_left_on_its_data(
    own_root: Path,
) -> None:
    """The safety net behind the parent-death signal (a run whose owner died before the signal
    was set, or a machine without setpriv): the next start ends what the pid files name. Redis
    and FalkorDB rewrite their process titles, so they are known by pid and start time."""
    settings = isolated_settings(own_root)
    earlier = Stack(settings)
    for name in ("redis", "graph"):
        await earlier.embedded(name).start()
    left = server_family(own_root)
    # The earlier owner is forgotten (as if killed); a new stack starts on the same data dir.
    later = Stack(settings)
    try:
        for name in ("redis", "graph"):
            await later.embedded(name).start()
            await later.embedded(name).check()
        assert survivors(left, 0) == []
    finally:
        for name in ("redis", "graph"):
            await later.embedded(name).stop()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_while_starting_stops_at_once_and_leaves_nothing(
    stop: signal.Signals, own_root: Path
) -> None:
    """SIGHUP too: a closed terminal sends it, and it must stop in order, not kill outright."""
    root = own_root
    env = cli_environment(isolated_settings(root))
    up = start_up(env, root)
    try:
        wait_for_line(up, "healthy", timeout=120)  # some servers up, the rest still starting
        family = server_family(root)
        assert family
        up.send_signal(stop)
        started = time.monotonic()
        assert up.wait(timeout=60) == 0
        took = time.monotonic() - started
        assert survivors(family, 0) == []
        assert not list((root / "run").glob("*.pid"))
        assert took < 20, f"a start was stopped in {took:.1f}s"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
