"""Webhooks: every `TaskCompleted` POSTed, signed, to each configured URL.

One durable consumer per URL (`webhook-<hash of the URL>`, on
`sutazai.events.task.*.TaskCompleted`), through the platform's consumer machinery
(`handlers.consumers.consume`): a receiver that is down or slow delays only its own deliveries.
A POST that fails (a connection error, a timeout, a status other than 2xx) raises, so the event
is delivered again after a growing delay, up to `webhook_attempts` tries; then it is parked on
`sutazai.dlq.webhook-<hash>` and `sutazai dlq replay` can send it again later.

The body is the event's JSON envelope. Each request carries:

- `X-Sutazai-Timestamp`: Unix seconds when this try was signed;
- `X-Sutazai-Signature`: `sha256=<hex>`, HMAC-SHA256 with the shared secret over
  `<timestamp>.<body>` (the body's exact bytes);
- `X-Sutazai-Event-Id`, `X-Sutazai-Event-Type`: from the envelope. Delivery is at least once:
  a receiver drops an `event_id` it has already handled.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence

import httpx
import structlog
from faststream.nats import NatsRouter

from eventstore.store import EventStore
from handlers.consumers import Delivered, Delivery, consume
from schemas.envelope import EventEnvelope

log = structlog.get_logger(__name__)

SUBJECT = "sutazai.events.task.*.TaskCompleted"
SIGNATURE_HEADER = "X-Sutazai-Signature"
TIMESTAMP_HEADER = "X-Sutazai-Timestamp"
EVENT_ID_HEADER = "X-Sutazai-Event-Id"
EVENT_TYPE_HEADER = "X-Sutazai-Event-Type"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with `secret` over `<timestamp>.<body>`."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether `signature` is ours for this body and `timestamp` is within `tolerance` seconds."""
    try:
        stamped = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - stamped) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, stamped, body), signature)


def consumer_name(url: str) -> str:
    """`webhook-<12 hex>`: the durable consumer (and DLQ subject suffix) of one URL."""
    return f"webhook-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


class WebhookFailed(RuntimeError):
    """The receiver did not answer 2xx: the event is delivered again later."""


class Webhooks:
    """Signed POSTs of each `TaskCompleted` to every URL, retried, then dead-lettered."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: bytes,
        *,
        timeout: float,
        delivery: Delivery,
    ) -> None:
        if not secret:
            raise ValueError("webhooks need a secret to sign with (SUTAZAI_WEBHOOK_SECRET)")
        self._urls = list(dict.fromkeys(urls))
        self._secret = secret
        self._timeout = timeout
        self._delivery = delivery

    def router(self, store: EventStore) -> NatsRouter:
        """One durable consumer per URL, to include in a broker."""
        router = NatsRouter()
        for url in self._urls:
            consume(
                router,
                store,
                consumer=consumer_name(url),
                subject=SUBJECT,
                handle=self._poster(url),
                delivery=self._delivery,
            )
        return router

    def _poster(self, url: str) -> Callable[[Delivered], Awaitable[None]]:
        async def post(delivered: Delivered) -> None:
            await self.post(url, delivered.envelope)

        return post

    async def post(self, url: str, envelope: EventEnvelope) -> None:
        """POST one event to `url`, signed now; raises `WebhookFailed` unless it answers 2xx."""
        body = envelope.model_dump_json().encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sutazai-webhook/1",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            EVENT_ID_HEADER: str(envelope.event_id),
            EVENT_TYPE_HEADER: envelope.event_type,
        }
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                raise WebhookFailed(f"{consumer_name(url)}: {error!r}") from error
        if not response.is_success:
            raise WebhookFailed(f"{consumer_name(url)}: answered {response.status_code}")
        log.info(
            "webhook.delivered",
            consumer=consumer_name(url),
            event_id=str(envelope.event_id),
            status=response.status_code,
        )
