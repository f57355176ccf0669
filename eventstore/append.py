"""Append an aggregate's new events in one request or one atomic batch, checked for concurrency."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

from eventstore.connection import ConnectionWatch
from eventstore.errors import AppendRejected, ConcurrencyConflict, EventTooLarge, StoreUnavailable
from schemas.envelope import EventEnvelope, aggregate_subjects

WRONG_LAST_SEQUENCE = 10071
BATCH_DUPLICATE_MESSAGE_ID = 10201

_UNREACHABLE = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
)


@dataclass(frozen=True)
class AppendResult:
    """Where the events landed; `duplicate` when the server had them already (same command)."""

    first_sequence: int
    last_sequence: int
    duplicate: bool = False


def _encode(
    envelope: EventEnvelope, index: int, limit: int, trace: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    body = envelope.model_dump_json().encode()
    headers = envelope.headers(index) | trace
    size = len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items())
    if size > limit:
        raise EventTooLarge(envelope.event_type, size, limit)
    return body, headers


def _outcome(reply: dict[str, Any], subject_filter: str, expected: int, count: int) -> AppendResult:
    error = reply.get("error")
    if error:
        code = int(error.get("err_code", 0))
        description = str(error.get("description", ""))
        if code == WRONG_LAST_SEQUENCE:
            raise ConcurrencyConflict(subject_filter, expected, description)
        if code == BATCH_DUPLICATE_MESSAGE_ID:
            return AppendResult(0, 0, duplicate=True)
        raise AppendRejected(code, description)
    last = int(reply["seq"])
    return AppendResult(last - count + 1, last, duplicate=bool(reply.get("duplicate")))


async def append_events(
    client: NatsClient,
    envelopes: Sequence[EventEnvelope],
    *,
    expected_sequence: int,
    timeout: float,
    watch: ConnectionWatch,
    trace: dict[str, str] | None = None,
) -> AppendResult:
    """Append one aggregate's events after `expected_sequence` (0: the aggregate is new).

    Several events go as one JetStream atomic batch: all are stored or none. The concurrency
    check spans every event type of the aggregate (`…<aggregate>.<id>.*`). `trace` (W3C trace
    context headers) goes on every event.
    """
    if not envelopes:
        raise ValueError("nothing to append")
    first = envelopes[0]
    subject_filter = aggregate_subjects(first.aggregate_type, first.aggregate_id)
    if any(
        (e.aggregate_type, e.aggregate_id) != (first.aggregate_type, first.aggregate_id)
        for e in envelopes
    ):
        raise ValueError("one append holds the events of one aggregate")
    if not client.is_connected:
        # Fail now rather than let the client buffer a publish for a server that is not there.
        raise StoreUnavailable("not connected to NATS")
    limit = client.max_payload
    encoded = [
        _encode(envelope, index, limit, trace or {}) for index, envelope in enumerate(envelopes)
    ]
    concurrency = {
        "Nats-Expected-Last-Subject-Sequence": str(expected_sequence),
        "Nats-Expected-Last-Subject-Sequence-Subject": subject_filter,
    }
    try:
        if len(encoded) == 1:
            body, headers = encoded[0]
            with watch.bounded("an append"):
                reply = await client.request(
                    first.subject, body, timeout=timeout, headers={**headers, **concurrency}
                )
        else:
            batch_id = uuid.uuid4().hex
            last = len(encoded)
            for position, (envelope, (body, headers)) in enumerate(
                zip(envelopes, encoded, strict=True), start=1
            ):
                batch = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(position)}
                if position == 1:
                    batch.update(concurrency)
                if position < last:
                    await client.publish(envelope.subject, body, headers={**headers, **batch})
                    continue
                batch["Nats-Batch-Commit"] = "1"
                with watch.bounded("an append"):
                    reply = await client.request(
                        envelope.subject, body, timeout=timeout, headers={**headers, **batch}
                    )
    except _UNREACHABLE as error:
        raise StoreUnavailable(f"NATS did not acknowledge the append: {error!r}") from error
    return _outcome(json.loads(reply.data), subject_filter, expected_sequence, len(encoded))
