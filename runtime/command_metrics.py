"""The command bus's work as Prometheus metrics: how many, how long, and how often contended."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from handlers.metrics import FinishedWork


class CommandMetrics(FinishedWork):
    """`sutazai_commands`, `sutazai_command_seconds` and `sutazai_command_conflicts` by command;
    handed to the bus as its observer (`finished` counts and times a command)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(
            registry,
            "command",
            counter=(
                "sutazai_commands",
                "Commands run by the bus, by command and outcome (ok, duplicate, or the error)",
            ),
            histogram=(
                "sutazai_command_seconds",
                "From a command's arrival at the bus to its answer (load, decide, append)",
            ),
        )
        self.conflicts = Counter(
            "sutazai_command_conflicts",
            "Appends refused because another writer moved the aggregate first (decided again)",
            ["command"],
            registry=registry,
        )

    def conflicted(self, command: str) -> None:
        """Count one lost race."""
        self.conflicts.labels(command).inc()
