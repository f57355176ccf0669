"""`python -m tests.leak_check -- COMMAND...`: run the suite, then fail if any process it started
is still alive.

This process makes itself a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): every process the
command starts, however deep and whatever session it moved to, is re-parented here instead of to
init when its parent dies. So once the command has exited, every descendant still alive is one
the run leaked. They are listed, killed, and the exit status is non-zero.

One `prctl` call through ctypes: the only PyPI wrapper (python-prctl) is unmaintained since 2020
and compiles against libcap.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys

import psutil

_PR_SET_CHILD_SUBREAPER = 36
LEAKED_EXIT = 3


def become_subreaper() -> None:
    """Adopt every orphan among our descendants."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")


def describe(process: psutil.Process) -> str:
    """pid, session and command line of a leaked process."""
    try:
        command = " ".join(process.cmdline()) or process.name()
        return f"pid {process.pid} (session {os.getsid(process.pid)}): {command[:200]}"
    except (psutil.Error, ProcessLookupError):
        return f"pid {process.pid} (gone while listed)"


def leftovers() -> list[psutil.Process]:
    """Our descendants that are still alive (zombies reaped first)."""
    me = psutil.Process()
    alive = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                child.wait(timeout=0)
                continue
        except psutil.Error:
            continue
        alive.append(child)
    return alive


def run_reaping(argv: list[str]) -> int:
    """Run `argv` to its end, reaping every adopted orphan that exits meanwhile.

    Unreaped, an orphan that exited would linger as a zombie, and a test that waits for a
    server's processes to be gone would wait for ever.
    """
    child = subprocess.Popen(argv)
    while True:
        try:
            # WNOWAIT: look at who exited without reaping it, so the command's own status stays
            # for Popen.wait.
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except KeyboardInterrupt:
            continue  # Ctrl-C reached the command as well: wait for it to finish
        except ChildProcessError:
            break
        if exited is None or exited.si_pid == child.pid:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(exited.si_pid, 0)
    return child.wait()


def main(argv: list[str]) -> int:
    """Run `argv`; its exit status, or LEAKED_EXIT when it left processes behind."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m tests.leak_check -- COMMAND...", file=sys.stderr)
        return 2
    become_subreaper()
    status = run_reaping(argv)
    # Processes killed by their parent-death signal a moment ago may not be reaped yet.
    gone, alive = psutil.wait_procs(leftovers(), timeout=5)
    if not alive:
        print(
            f"leak check: no process of the run is alive ({len(gone)} ended at its close)",
            file=sys.stderr,
        )
        return status
    print(f"leak check: {len(alive)} process(es) of the run still alive:", file=sys.stderr)
    for process in alive:
        print(f"  {describe(process)}", file=sys.stderr)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    return status or LEAKED_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
