"""W3C trace context in event headers: how one trace follows a request through the log.

An append writes the current span's `traceparent` (and `tracestate`) into every event's
headers; whoever reads the event (a projector, an agent through FastStream, another team's
consumer) continues the trace from there. Only headers: the event's body, the published
contract, is untouched.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_PROPAGATOR = TraceContextTextMapPropagator()


def current_trace_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span; empty outside any trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def trace_context(traceparent: str | None) -> Context:
    """The context an event's `traceparent` header carries (an empty one without it)."""
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({TRACEPARENT: traceparent})


def traces(tracer: Tracer) -> bool:
    """Whether spans from `tracer` go anywhere: reading headers for a no-op tracer is waste."""
    return not isinstance(tracer, NoOpTracer)
