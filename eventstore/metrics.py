"""What appends cost and how they end, as Prometheus metrics on the registry the store is given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Appends are fsynced before the ack: most take milliseconds, an election takes seconds."""


class AppendMetrics:
    """Append latency by size, events stored, and appends that stored nothing (by reason)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "sutazai_append_seconds",
            "From sending an append to JetStream's acknowledgement, by size (one event or an"
            " atomic batch)",
            ["events"],
            buckets=APPEND_BUCKETS,
            registry=registry,
        )
        self.appended = Counter(
            "sutazai_appended_events",
            "Events stored by this process's appends (duplicates the server had already: none)",
            registry=registry,
        )
        self.failures = Counter(
            "sutazai_append_failures",
            "Appends that stored nothing, by reason (conflict, unavailable, rejected, too_large)",
            ["reason"],
            registry=registry,
        )

    def stored(self, count: int, seconds: float, *, duplicate: bool) -> None:
        """An append was acknowledged."""
        self.seconds.labels("one" if count == 1 else "batch").observe(seconds)
        if not duplicate:
            self.appended.inc(count)

    def failed(self, reason: str) -> None:
        """An append stored nothing."""
        self.failures.labels(reason).inc()
