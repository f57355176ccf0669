"""The end-of-run check: a process the run leaves behind fails it; a clean run passes."""

from __future__ import annotations

import subprocess
import sys

from tests.leak_check import LEAKED_EXIT


def _check(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.leak_check", "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_process_left_in_a_session_of_its_own_fails_the_run_and_is_listed() -> None:
    # The shape of a leaked server: its own session, its parent (the shell) gone at once.
    result = _check("sh", "-c", "setsid sleep 123 >/dev/null 2>&1 &")
    assert result.returncode == LEAKED_EXIT, result.stderr
    assert "1 process(es) of the run still alive" in result.stderr
    assert "sleep 123" in result.stderr
    found = subprocess.run(["pgrep", "-f", "sleep 123"], capture_output=True, text=True)
    assert found.stdout == "", "the check kills what it found"


def test_a_run_that_leaves_nothing_keeps_its_own_exit_status() -> None:
    clean = _check("sh", "-c", "sleep 0.1 & wait")
    assert clean.returncode == 0, clean.stderr
    assert "no process of the run is alive" in clean.stderr
    assert _check("sh", "-c", "exit 5").returncode == 5


def test_an_orphan_that_exits_during_the_run_is_reaped_not_counted() -> None:
    # Adopted by the check while the command still runs, it ends before the command does.
    result = _check("sh", "-c", "(setsid sleep 0.2 &) ; sleep 1")
    assert result.returncode == 0, result.stderr
