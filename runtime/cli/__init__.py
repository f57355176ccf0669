"""The `sutazai` command line: each module registers one group of commands on `app`.

Loading the commands takes a second or two (the clients of every server). A Ctrl-C meanwhile
ends the process quietly with 130, as it does once a command runs, not with a traceback.
"""

import signal
import sys
import threading
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


_previous = None
if threading.current_thread() is threading.main_thread():
    _previous = signal.signal(signal.SIGINT, _interrupted)

from runtime.cli import (  # noqa: E402
    agent_commands,
    audit_commands,
    backup_commands,
    dlq_commands,
    doctor_commands,
    log_commands,
    projection_commands,
    schema_commands,
    stack_commands,
    work_commands,
)
from runtime.cli.base import app  # noqa: E402

if _previous is not None:
    signal.signal(signal.SIGINT, _previous)

__all__ = [
    "agent_commands",
    "app",
    "audit_commands",
    "backup_commands",
    "dlq_commands",
    "doctor_commands",
    "log_commands",
    "projection_commands",
    "schema_commands",
    "stack_commands",
    "work_commands",
]
