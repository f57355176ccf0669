"""The agents' Prometheus metrics: events handled by each consumer, and every model call.

On the registry of the process that runs the agents (never the global one). `FinishedWork`, the
shape of the events counted here, serves the command bus's metrics (`runtime/command_metrics.py`)
too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from faststream import BaseMiddleware, ContextRepo, StreamMessage
from faststream.message import AckStatus
from nats.errors import NotJSMessageError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from domain.model_call import CallOutcome, RecordModelCall

MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
"""A small local model answers in a fraction of a second to a minute or more."""

AGENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class FinishedWork:
    """One kind of work as it finishes: a counter by subject and outcome, and a histogram of each
    piece's seconds by subject. The agents' deliveries (by consumer) and the bus's commands (by
    command) are both counted this way."""

    def __init__(
        self,
        registry: CollectorRegistry,
        subject: str,
        *,
        counter: tuple[str, str],
        histogram: tuple[str, str],
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> None:
        """`counter` and `histogram` are each a metric's name and help text."""
        self.count = Counter(*counter, [subject, "outcome"], registry=registry)
        self.seconds = Histogram(*histogram, [subject], buckets=buckets, registry=registry)

    def finished(self, subject: str, outcome: str, seconds: float) -> None:
        """One piece of work ended."""
        self.count.labels(subject, outcome).inc()
        self.seconds.labels(subject).observe(seconds)


class AgentMetrics(FinishedWork):
    """`sutazai_agent_events_total` and `sutazai_agent_event_seconds`, per durable consumer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(
            registry,
            "consumer",
            counter=(
                "sutazai_agent_events",
                "Events an agent's consumer handled, by outcome: acked (done, or parked on the DLQ"
                " after its last attempt), nacked (to be delivered again), failed (an error the"
                " consumer itself raised)",
            ),
            histogram=(
                "sutazai_agent_event_seconds",
                "From an event's delivery to its acknowledgement (model calls included)",
            ),
            buckets=AGENT_BUCKETS,
        )


class CountedDeliveries:
    """A FastStream middleware (on the agents' broker): every JetStream delivery counted and
    timed under its durable consumer's name, whichever agent subscribed it."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> BaseMiddleware:
        return _Counting(msg, context=context, metrics=self.metrics)


class _Counting(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: ContextRepo, metrics: AgentMetrics) -> None:
        super().__init__(msg, context=context)
        self._metrics = metrics

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            consumer = msg.raw_message.metadata.consumer
        except (NotJSMessageError, AttributeError):  # a replay request: core NATS, not a delivery
            return await call_next(msg)
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await call_next(msg)
            outcome = "nacked" if msg.committed == AckStatus.NACKED else "acked"
            return result
        finally:
            self._metrics.finished(consumer, outcome, time.perf_counter() - started)


class ModelMetrics:
    """`sutazai_model_call_seconds`, `sutazai_model_tokens_total`, `sutazai_model_circuit_open`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "sutazai_model_call_seconds",
            "One model call, retries included, by operation (chat, embed), model and outcome",
            ["operation", "model", "outcome"],
            buckets=MODEL_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "sutazai_model_tokens",
            "Tokens the model server reported, by model and kind (prompt, completion)",
            ["model", "kind"],
            registry=registry,
        )
        self.circuit_open = Gauge(
            "sutazai_model_circuit_open",
            "1 while calls to this model server are refused without trying (too many failures)",
            ["circuit"],
            registry=registry,
        )

    def called(self, call: RecordModelCall, *, circuit: str) -> None:
        """One call ended, as it is recorded; the circuit it went through is open only when the
        call was refused without trying (any answer means it closed again)."""
        self.seconds.labels(call.operation, call.model, call.outcome).observe(
            call.latency_ms / 1000
        )
        if call.prompt_tokens:
            self.tokens.labels(call.model, "prompt").inc(call.prompt_tokens)
        if call.completion_tokens:
            self.tokens.labels(call.model, "completion").inc(call.completion_tokens)
        is_open = call.outcome == CallOutcome.CIRCUIT_OPEN
        self.circuit_open.labels(circuit).set(1 if is_open else 0)
