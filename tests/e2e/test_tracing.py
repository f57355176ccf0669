"""One trace follows a task from the mutation to the read model, the agents and the model call.

The platform runs with an OpenTelemetry SDK provider and its in-memory exporter; the trace
context crosses the log in the events' `traceparent` header, which a plain nats-py reader sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from uuid import UUID

import pytest
from nats.js.api import RawStreamMsg
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from uuid_utils.compat import uuid4

from eventstore.streams import EVENTS_STREAM
from runtime.agents import AgentOptions, run_agents
from runtime.settings import Settings
from runtime.stack import Stack
from schemas.envelope import aggregate_subjects
from tests.e2e.conftest import (
    QUICK_AGENTS,
    Gateway,
    coordinator_caught_up,
    running_gateway,
    until_done,
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.clear()


@pytest.fixture
async def traced_platform(
    settings: Settings, stack: Stack, exporter: InMemorySpanExporter
) -> AsyncIterator[Gateway]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with (
            running_gateway(settings, stack, tracing=provider, **QUICK_AGENTS) as gateway,
            run_agents(gateway.platform, AgentOptions(replica=f"t{uuid4().hex[:8]}")),
        ):
            await coordinator_caught_up(gateway)
            yield gateway
    finally:
        provider.shutdown()


def _named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def _submit(
    gateway: Gateway,
    task_type: str,
    payload: dict[str, str],
    *,
    spans: InMemorySpanExporter | None = None,
) -> tuple[str, str]:
    """A new user submits a task: their access token and the task's id. `spans`, when given,
    is cleared after the sign-up, so that it holds the submission's spans only."""
    user = await gateway.client.sign_up()
    if spans is not None:
        spans.clear()
    submitted = await gateway.submit_task(user.access_token, task_type, payload)
    return user.access_token, submitted["aggregateId"]


async def _task_submitted_message(gateway: Gateway, task_id: str) -> RawStreamMsg:
    """The task's `TaskSubmitted` event as a plain NATS reader gets it from the stream."""
    js = gateway.platform.nats.jetstream()
    subject = aggregate_subjects("task", UUID(task_id)).replace("*", "TaskSubmitted")
    return await js.get_last_msg(EVENTS_STREAM, subject)


async def _spans_of_trace(
    exporter: InMemorySpanExporter, trace_id: int, *names: str, timeout: float = 30.0
) -> list[ReadableSpan]:
    """The spans of one trace, once every name in `names` is among them."""
    deadline = time.monotonic() + timeout
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        missing = [name for name in names if not _named(spans, name)]
        if not missing:
            return spans
        assert time.monotonic() < deadline, (
            f"trace lacks {missing}: {sorted({s.name for s in spans})}"
        )
        await asyncio.sleep(0.1)


async def test_one_trace_covers_gateway_command_append_projector_agents_and_model(
    traced_platform: Gateway, exporter: InMemorySpanExporter
) -> None:
    gateway = traced_platform
    token, task_id = await _submit(
        gateway, "code.generate", {"prompt": "a function that adds two numbers"}, spans=exporter
    )
    task = await until_done(gateway, token, task_id, timeout=120)
    assert task["status"] == "COMPLETED", task

    # The request's server span is the root: the mutation started the trace.
    commands = _named(exporter.get_finished_spans(), "command SubmitTask")
    assert len(commands) == 1, commands
    trace_id = commands[0].context.trace_id
    spans = await _spans_of_trace(
        exporter,
        trace_id,
        "command SubmitTask",
        "append task",
        "project tasks",
        "command AssignTask",
        "command StartTask",
        "model chat",
        "command CompleteTask",
    )
    roots = [span for span in spans if span.parent is None]
    assert len(roots) == 1, roots
    assert roots[0].kind == SpanKind.SERVER, roots
    assert roots[0].attributes is not None
    assert "graphql" in str(roots[0].attributes)

    by_id = {span.context.span_id: span for span in spans}

    def ancestry(span: ReadableSpan) -> list[str]:
        names = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    # Each step hangs off the one that caused it, across the log: the projector's span is a
    # child of the append that wrote the event, the model call sits inside an agent's delivery.
    (submit,) = _named(spans, "command SubmitTask")
    assert roots[0].name in ancestry(submit)
    projected = [s for s in _named(spans, "project tasks") if "append task" in ancestry(s)]
    assert projected, [ancestry(s) for s in _named(spans, "project tasks")]
    (model,) = _named(spans, "model chat")
    assert any(name.endswith(" process") for name in ancestry(model)), ancestry(model)
    assert "command SubmitTask" in ancestry(model)
    (complete,) = _named(spans, "command CompleteTask")
    assert "command AssignTask" in ancestry(complete)
    assert model.attributes is not None
    assert int(str(model.attributes["gen_ai.usage.output_tokens"])) > 0


async def test_events_carry_the_trace_in_a_header_that_plain_nats_readers_see(
    traced_platform: Gateway, exporter: InMemorySpanExporter
) -> None:
    gateway = traced_platform
    _, task_id = await _submit(gateway, "code.explain", {"code": "x = 1"}, spans=exporter)
    (append,) = _named(exporter.get_finished_spans(), "append task")

    message = await _task_submitted_message(gateway, task_id)
    traceparent = (message.headers or {})["traceparent"]
    version, trace_hex, span_hex, flags = traceparent.split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    assert int(trace_hex, 16) == append.context.trace_id
    assert int(span_hex, 16) == append.context.span_id


async def test_without_tracing_no_event_carries_a_trace_header(gateway: Gateway) -> None:
    _, task_id = await _submit(gateway, "code.explain", {"code": "y = 2"})
    message = await _task_submitted_message(gateway, task_id)
    assert "traceparent" not in (message.headers or {})
