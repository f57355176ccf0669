"""The `sutazai` command line: each module registers one group of commands on `app`."""

from runtime.cli import (
    agent_commands,
    audit_commands,
    dlq_commands,
    log_commands,
    projection_commands,
    schema_commands,
    stack_commands,
    work_commands,
)
from runtime.cli.base import app

__all__ = [
    "agent_commands",
    "app",
    "audit_commands",
    "dlq_commands",
    "log_commands",
    "projection_commands",
    "schema_commands",
    "stack_commands",
    "work_commands",
]
