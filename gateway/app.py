"""The gateway's ASGI app: GraphQL (GraphiQL, websockets), liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from gateway.auth import Principal
from gateway.context import GatewayContext, GatewayServices, Loaders
from gateway.errors import ErrorCode, GatewayError, error_body
from gateway.metrics import GatewayMetrics
from gateway.rate_limits import Limit, RateLimiter
from gateway.schema import build_schema

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when a dependency answers; raises when it does not."""


@dataclass(frozen=True)
class GatewayLimits:
    """What one client may ask of the gateway."""

    per_user: Limit
    per_ip: Limit
    max_request_bytes: int
    max_depth: int
    max_tokens: int
    max_aliases: int


class _GraphQL(GraphQL[GatewayContext, None]):
    def __init__(self, services: GatewayServices, limits: GatewayLimits, metrics: GatewayMetrics):
        schema = build_schema(
            max_depth=limits.max_depth,
            max_tokens=limits.max_tokens,
            max_aliases_count=limits.max_aliases,
            count_error=metrics.error,
        )
        super().__init__(
            schema, graphql_ide="graphiql", subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL]
        )
        self._services = services
        self._metrics = metrics

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    async def get_context(self, request: Request | WebSocket, response: Any) -> GatewayContext:
        principal = request.scope.get("state", {}).get("principal")
        return GatewayContext(
            services=self._services,
            request=request,
            principal=principal,
            loaders=Loaders(self._services.postgres),
            response=response,
            metrics=self._metrics,
        )

    async def on_ws_connect(self, context: GatewayContext) -> None:
        params = context.connection_params or {}
        token = _bearer(str(params.get("authorization") or params.get("Authorization") or ""))
        if not token:
            return
        try:
            context.principal = self._services.tokens.verify(token)
        except GatewayError as error:
            rejection: dict[str, object] = {"code": error.code.value, "message": str(error)}
            raise ConnectionRejectionError(rejection) from None


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class _TooLarge(Exception):
    pass


class GraphQLGate:
    """Before GraphQL runs: the body's size, the access token, and the rate limits."""

    def __init__(
        self,
        app: ASGIApp,
        services: GatewayServices,
        limiter: RateLimiter,
        limits: GatewayLimits,
        metrics: GatewayMetrics,
    ) -> None:
        self._app = app
        self._services = services
        self._limiter = limiter
        self._limits = limits
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            client = scope.get("client") or ("unknown", 0)
            if await self._over_limit([(f"ip:{client[0]}", self._limits.per_ip)]) > 0:
                # Refused before the handshake: the client sees the upgrade denied (HTTP 403).
                await send({"type": "websocket.close", "code": 4429, "reason": "rate limited"})
                return
            self._metrics.subscriptions.inc()
            try:
                await self._app(scope, receive, send)
            finally:
                self._metrics.subscriptions.dec()
            return
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        refusal = await self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit = self._limits.max_request_bytes
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self._app(scope, bounded_receive, send)
        except _TooLarge:
            await _too_large(limit)(scope, receive, send)

    async def _refusal(self, request: Request) -> Response | None:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_request_bytes:
            return _too_large(self._limits.max_request_bytes)
        principal: Principal | None = None
        token = _bearer(request.headers.get("authorization", ""))
        if token:
            try:
                principal = self._services.tokens.verify(token)
            except GatewayError as error:
                self._metrics.error(error.code.value)
                return JSONResponse(error_body(error.code, str(error)), status_code=401)
            request.scope.setdefault("state", {})["principal"] = principal
        client = request.client.host if request.client else "unknown"
        buckets = [(f"ip:{client}", self._limits.per_ip)]
        if principal is not None:
            buckets.append((f"user:{principal.user_id}", self._limits.per_user))
        wait = await self._over_limit(buckets)
        if wait > 0:
            self._metrics.error(ErrorCode.RATE_LIMITED.value)
            return JSONResponse(
                error_body(ErrorCode.RATE_LIMITED, f"too many requests; retry in {wait:.1f}s"),
                status_code=429,
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        return None

    async def _over_limit(self, buckets: list[tuple[str, Limit]]) -> float:
        """Seconds to wait before these buckets allow a request (0: go on)."""
        try:
            return await self._limiter.take(buckets)
        except Exception as error:
            # Redis down: serve unthrottled rather than refuse everyone; /readyz says so.
            log.warning("gateway.rate_limit_unavailable", error=repr(error))
            return 0.0


def _too_large(limit: int) -> Response:
    return JSONResponse(
        error_body(ErrorCode.VALIDATION, f"the request body is over {limit} bytes"),
        status_code=413,
    )


def build_app(
    services: GatewayServices,
    limiter: RateLimiter,
    limits: GatewayLimits,
    checks: Mapping[str, ReadinessCheck],
    *,
    check_timeout: float = 2.0,
    registry: CollectorRegistry | None = None,
) -> ASGIApp:
    """The gateway, given its services, limits and a readiness check per dependency.

    `/metrics` serves `registry`: the gateway's own metrics and whatever else the process puts
    there (the system monitor's gauges).
    """
    metrics = GatewayMetrics(registry)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        async def one(name: str, check: ReadinessCheck) -> tuple[str, str | None]:
            try:
                await asyncio.wait_for(check(), timeout=check_timeout)
            except Exception as error:
                return name, repr(error)
            return name, None

        results = await asyncio.gather(*(one(name, check) for name, check in checks.items()))
        failed = {name: error for name, error in results if error is not None}
        body = {"status": "unavailable" if failed else "ready", "failed": failed}
        return JSONResponse(body, status_code=503 if failed else 200)

    async def metrics_page(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    graphql = GraphQLGate(_GraphQL(services, limits, metrics), services, limiter, limits, metrics)
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_page),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
        ],
    )
    return _Measured(app, metrics)


_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/graphql"})


class _Measured:
    """Counts and times every HTTP request (a plain ASGI wrapper: no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            # Only our routes get a label of their own: any other path must not grow the series.
            path = scope["path"] if scope["path"] in _ROUTES else "other"
            self._metrics.latency.labels(path).observe(time.perf_counter() - started)
            self._metrics.requests.labels(path, str(status)).inc()
