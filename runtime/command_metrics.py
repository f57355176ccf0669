"""The command bus's work as Prometheus metrics: how many, how long, and how often contended."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class CommandMetrics:
    """`sutazai_commands`, `sutazai_command_seconds` and `sutazai_command_conflicts` by command;
    handed to the bus as its observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "sutazai_commands",
            "Commands run by the bus, by command and outcome (ok, duplicate, or the error)",
            ["command", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "sutazai_command_seconds",
            "From a command's arrival at the bus to its answer (load, decide, append)",
            ["command"],
            registry=registry,
        )
        self.conflicts = Counter(
            "sutazai_command_conflicts",
            "Appends refused because another writer moved the aggregate first (decided again)",
            ["command"],
            registry=registry,
        )

    def finished(self, command: str, outcome: str, seconds: float) -> None:
        """Count one command and its time."""
        self.commands.labels(command, outcome).inc()
        self.seconds.labels(command).observe(seconds)

    def conflicted(self, command: str) -> None:
        """Count one lost race."""
        self.conflicts.labels(command).inc()
