"""A deadline on every test phase that fails the test that hung, not the session, with its stacks.

pytest-timeout was the first choice and is not used: its signal method dumps only threads (in an
asyncio suite a hang is the main thread idle in `select`, which says nothing), and its thread
method ends the whole session. Here SIGALRM, at the deadline, writes every thread's stack and
every asyncio task's stack, then raises `PhaseHung` in the main thread. Inside a running event
loop it waits for the loop to be idle in its selector before raising, so the exception leaves
the loop (and fails the test) instead of killing whichever background task happened to run.
Should even that not end the phase (a C call that never returns to Python), a watchdog thread
ends the process at the deadline plus a grace: the session's servers die with it (they carry a
parent-death signal) and `tests/leak_check.py` reports anything that did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Generator
from types import FrameType

import pytest

_INI = "phase_timeout"
_EXIT_GRACE = 60.0
_BUSY_LOOP_PATIENCE = 5.0
"""Seconds to wait for a busy event loop to go idle before raising wherever it is."""


class PhaseHung(BaseException):
    """A test phase (setup, call, teardown) ran past its deadline. BaseException, so that no
    `except Exception` in the code under test swallows it."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _INI, "seconds a test's setup, call or teardown may take (0: no limit)", default="300"
    )


def stacks() -> str:
    """Every thread's stack, and every task's of the loop running in this thread."""
    out = io.StringIO()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, ident)} ---\n")
        out.write("".join(traceback.format_stack(frame)))
    loop = asyncio._get_running_loop()
    if loop is not None:
        for task in asyncio.all_tasks(loop):
            out.write(f"--- task {task.get_name()}: {task.get_coro()!r} ---\n")
            task.print_stack(file=out)
    return out.getvalue()


def _in_selector(frame: FrameType | None) -> bool:
    """Whether the signal arrived while the loop waited in its selector (idle)."""
    return frame is not None and frame.f_code.co_filename.endswith("selectors.py")


class _Deadline:
    """One armed phase: SIGALRM at the deadline, the process ended at deadline plus grace."""

    def __init__(self, phase: str, nodeid: str, seconds: float) -> None:
        self.phase = phase
        self.nodeid = nodeid
        self.seconds = seconds
        self.fired_at = 0.0
        self._done = threading.Event()

    def __enter__(self) -> _Deadline:
        self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        threading.Thread(target=self._last_resort, name="hang-guard", daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)
        self._done.set()

    def _on_alarm(self, _signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not self.fired_at:
            self.fired_at = now
        loop_running = asyncio._get_running_loop() is not None
        patient = now - self.fired_at < _BUSY_LOOP_PATIENCE
        if loop_running and patient and not _in_selector(frame):
            signal.setitimer(signal.ITIMER_REAL, 0.05)  # try again once the loop is idle
            return
        report = stacks()
        sys.stderr.write(f"\n{self.nodeid} {self.phase} hung; stacks:\n{report}")
        raise PhaseHung(
            f"{self.phase} of {self.nodeid} took longer than {self.seconds:g}s; "
            f"every thread's and task's stack:\n{report}"
        )

    def _last_resort(self) -> None:
        if self._done.wait(self.seconds + _EXIT_GRACE):
            return
        sys.stderr.write(
            f"\n{self.nodeid} {self.phase} hung past {self.seconds + _EXIT_GRACE:g}s and could"
            f" not be interrupted; ending the run. Stacks:\n{stacks()}"
        )
        sys.stderr.flush()
        os._exit(3)


def _seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("phase_timeout")
    if marker is not None:
        return float(marker.args[0])
    return float(item.config.getini(_INI))


@contextlib.contextmanager
def _guarded(item: pytest.Item, phase: str) -> Generator[None]:
    seconds = _seconds(item)
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    with _Deadline(phase, item.nodeid, seconds):
        yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "phase_timeout(seconds): this test's own limit for each of its phases"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    with _guarded(item, "setup"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    with _guarded(item, "call"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None]:
    with _guarded(item, "teardown"):
        return (yield)
