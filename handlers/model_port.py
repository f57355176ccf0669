"""The one way agents reach a model: `ollama.AsyncClient` behind timeouts, retries, a circuit
breaker and a concurrency limit, every call recorded as a `ModelCalled` event.

Retries and backoff are tenacity's; the circuit breaker is purgatory's (async-first, typed, can
keep its state in Redis for several replicas). A call that cannot be made fails with a typed
`ModelError` whose `code` ends up on the task.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import httpx
import ollama
import structlog
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer, use_span
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential
from uuid_utils.compat import uuid7

from domain.model_call import CallOutcome, RecordModelCall
from handlers.metrics import ModelMetrics
from handlers.work_errors import WorkError
from schemas.envelope import EventEnvelope

log = structlog.get_logger(__name__)

_CALL_IDS = uuid5(NAMESPACE_URL, "https://sutazai.dev/model-call")


class ModelError(WorkError):
    """A model call that did not produce an answer; `code` is stable, `retryable` says if later
    may work."""

    code = "MODEL_ERROR"
    retryable = True
    outcome = CallOutcome.FAILED


class ModelUnavailable(ModelError):
    """The model server does not answer, or the circuit is open after repeated failures."""

    code = "MODEL_UNAVAILABLE"


class ModelCircuitOpen(ModelUnavailable):
    """Too many recent failures: calls are refused without trying, until the circuit closes."""

    code = "MODEL_CIRCUIT_OPEN"
    outcome = CallOutcome.CIRCUIT_OPEN


class ModelTimedOut(ModelError):
    """The model took longer than the call's deadline."""

    code = "MODEL_TIMEOUT"
    outcome = CallOutcome.TIMED_OUT


class ModelRefused(ModelError):
    """The server refused the request itself (unknown model, bad options): retrying won't help."""

    code = "MODEL_REFUSED"
    retryable = False


@dataclass(frozen=True)
class ModelPolicy:
    """How hard and how long the port tries."""

    timeout: float = 120.0
    attempts: int = 3
    concurrency: int = 2
    breaker_threshold: int = 5
    breaker_seconds: float = 30.0


@dataclass(frozen=True)
class Reply:
    """A model's answer and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    call_id: UUID


CallRecorder = Callable[[RecordModelCall, EventEnvelope], Awaitable[None]]
"""Records a call as an event caused by the triggering event (through the command bus)."""
TokenSink = Callable[[int, str], Awaitable[None]]
"""Receives each streamed token with its position."""


def call_id_for(cause: UUID, purpose: str) -> UUID:
    """The id of the model call an event caused for a purpose: the same on every redelivery,
    so a call is recorded once, and a recorded run can be found from its triggering event."""
    return uuid5(_CALL_IDS, f"{cause}.{purpose}")


def _transient(error: BaseException) -> bool:
    if isinstance(error, ollama.ResponseError):
        return error.status_code >= 500
    return isinstance(error, ConnectionError | httpx.TransportError | TimeoutError)


def _prompt_hash(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class ModelPort:
    """Chat and embeddings for one agent, with the policy above."""

    def __init__(
        self,
        client: ollama.AsyncClient,
        record: CallRecorder,
        *,
        agent_id: UUID | None,
        chat_model: str,
        embed_model: str,
        policy: ModelPolicy | None = None,
        breakers: AsyncCircuitBreakerFactory | None = None,
        circuit: str = "model",
        metrics: ModelMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._client = client
        self._record = record
        self.agent_id = agent_id
        self.chat_model = chat_model
        self.embed_model = embed_model
        self.policy = policy or ModelPolicy()
        self._breakers = breakers or AsyncCircuitBreakerFactory(
            default_threshold=self.policy.breaker_threshold,
            default_ttl=self.policy.breaker_seconds,
            exclude=[(ollama.ResponseError, lambda error: error.status_code < 500)],
        )
        self._circuit = circuit
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        self._metrics = metrics
        self._tracer = tracer or NoOpTracer()

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        cause: EventEnvelope,
        purpose: str,
        options: Mapping[str, Any] | None = None,
        schema: Mapping[str, Any] | None = None,
        on_token: TokenSink | None = None,
    ) -> Reply:
        """The assistant's reply to `messages` (JSON matching `schema` when given)."""
        options = dict(options or {})
        request = {"messages": list(messages), "options": options, "format": schema}

        async def call() -> tuple[str, int, int]:
            if on_token is None:
                answer = await self._client.chat(
                    model=self.chat_model,
                    messages=list(messages),
                    options=options,
                    format=dict(schema) if schema else None,
                )
                return (
                    answer.message.content or "",
                    answer.prompt_eval_count or 0,
                    answer.eval_count or 0,
                )
            parts: list[str] = []
            prompt_tokens = completion_tokens = 0
            stream = await self._client.chat(
                model=self.chat_model,
                messages=list(messages),
                options=options,
                format=dict(schema) if schema else None,
                stream=True,
            )
            async for part in stream:
                text = part.message.content or ""
                if text:
                    await on_token(len(parts), text)
                    parts.append(text)
                if part.done:
                    prompt_tokens = part.prompt_eval_count or 0
                    completion_tokens = part.eval_count or 0
            return "".join(parts), prompt_tokens, completion_tokens

        return await self._run("chat", self.chat_model, purpose, cause, request, options, call)

    async def embed(
        self, texts: Sequence[str], *, cause: EventEnvelope | None, purpose: str
    ) -> list[list[float]]:
        """One normalised vector per text (recorded only when caused by an event)."""
        vectors: list[list[float]] = []

        async def call() -> tuple[str, int, int]:
            answer = await self._client.embed(model=self.embed_model, input=list(texts))
            vectors[:] = [list(v) for v in answer.embeddings]
            return "", answer.prompt_eval_count or 0, 0

        await self._run("embed", self.embed_model, purpose, cause, list(texts), {}, call)
        return vectors

    async def _run(
        self,
        operation: str,
        model: str,
        purpose: str,
        cause: EventEnvelope | None,
        request: object,
        options: Mapping[str, Any],
        call: Callable[[], Awaitable[tuple[str, int, int]]],
    ) -> Reply:
        call_id = call_id_for(cause.event_id, purpose) if cause else uuid7()
        started = time.perf_counter()
        outcome, error_code = CallOutcome.OK, None
        text, prompt_tokens, completion_tokens = "", 0, 0
        span = self._tracer.start_span(
            f"model {operation}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.request.model": model, "sutazai.purpose": purpose},
        )
        try:
            with use_span(span, end_on_exit=True):
                text, prompt_tokens, completion_tokens = await self._attempts(call)
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": prompt_tokens,
                        "gen_ai.usage.output_tokens": completion_tokens,
                    }
                )
        except ModelError as error:
            outcome, error_code = error.outcome, error.code
            raise
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            record = RecordModelCall(
                call_id=call_id,
                agent_id=self.agent_id,
                model=model,
                operation=operation,
                purpose=purpose,
                prompt_hash=_prompt_hash(request),
                options=json.loads(json.dumps(dict(options), default=str)),
                latency_ms=round(latency_ms, 3),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                outcome=outcome,
                error_code=error_code,
            )
            if self._metrics is not None:
                self._metrics.called(record, circuit=self._circuit)
            try:
                if cause is not None:  # a query's embedding is not a change: nothing to record
                    await self._record(record, cause)
            except Exception as error:  # the answer stands; the record is best effort
                log.warning("model_call.not_recorded", call_id=str(call_id), error=repr(error))
        return Reply(text, prompt_tokens, completion_tokens, latency_ms, call_id)

    async def _attempts(
        self, call: Callable[[], Awaitable[tuple[str, int, int]]]
    ) -> tuple[str, int, int]:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(call)
        except OpenedState as error:
            raise ModelCircuitOpen(f"the model circuit is open: {error}") from error
        except TimeoutError as error:
            raise ModelTimedOut(f"no answer within {self.policy.timeout}s") from error
        except ollama.ResponseError as error:
            if error.status_code < 500:
                raise ModelRefused(f"{error.status_code}: {error.error}") from error
            raise ModelUnavailable(f"{error.status_code}: {error.error}") from error
        except (ConnectionError, httpx.TransportError) as error:
            raise ModelUnavailable(f"the model server does not answer: {error}") from error
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _once(
        self, call: Callable[[], Awaitable[tuple[str, int, int]]]
    ) -> tuple[str, int, int]:
        async with self._slots, await self._breakers.get_breaker(self._circuit):
            async with asyncio.timeout(self.policy.timeout):
                return await call()
