"""The per-test deadline: a hung test fails on its own, with stacks, and the run goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HUNG = """
import asyncio
import time

import pytest


async def test_waits_on_an_event_nobody_sets():
    async def forgotten():
        await asyncio.Event().wait()

    await asyncio.gather(asyncio.create_task(forgotten(), name="forgotten-waiter"))


def test_sleeps_in_sync_code():
    time.sleep(600)


@pytest.fixture
async def stuck_teardown():
    yield
    await asyncio.sleep(600)


async def test_with_a_teardown_that_hangs(stuck_teardown):
    pass


async def test_swallows_exceptions_in_a_loop():
    while True:
        try:
            await asyncio.sleep(0.01)
        except Exception:
            pass


def test_after_them_still_runs():
    assert True
"""


def test_each_hung_test_fails_alone_with_its_stacks_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "test_hung.py").write_text(HUNG)
    root = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.hang_guard",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-o",
            "phase_timeout=2",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=session",
            "-o",
            "asyncio_default_test_loop_scope=session",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_hung.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=tmp_path,
    )
    took = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "3 failed, 2 passed, 1 error" in out, out
    assert "call of test_hung.py::test_waits_on_an_event_nobody_sets took longer than 2s" in out
    assert "forgotten-waiter" in out, "the tasks' stacks are shown"
    assert "teardown of test_hung.py::test_with_a_teardown_that_hangs" in out
    assert "--- thread MainThread ---" in out
    assert took < 60, f"each hang cost its deadline only ({took:.0f}s)"
