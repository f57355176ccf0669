"""The gateway's ASGI app: GraphQL (GraphiQL, websockets), liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
import structlog
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import NoOpTracerProvider, TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult, SubscriptionExecutionResult

from gateway import explorer
from gateway.auth import Principal
from gateway.context import GatewayContext, GatewayServices, Loaders
from gateway.errors import ErrorCode, GatewayError, error_body
from gateway.loop_lag import LoopLag
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
    max_in_flight: int = 64
    """Requests worked on at once; past it a request waits `admission_wait`, then is refused."""
    admission_wait: float = 0.1
    max_loop_lag: float = 0.1
    """While the event loop runs this many seconds late (`gateway/loop_lag.py`), new requests
    are refused at once: the queue before any of our code, which `max_in_flight` cannot see."""


GRAPHQL_RESPONSE = "application/graphql-response+json"
"""GraphQL over HTTP's own media type: request errors answer 4xx and carry no `data` entry."""

SUBSCRIPTION_PROTOCOLS = (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
    GRAPHQL_SSE_PROTOCOL,
)
"""Websockets (graphql-ws's protocol and the legacy subscriptions-transport-ws one) and HTTP
streams (incremental delivery as `multipart/mixed`, and server-sent events)."""

TOKEN_EXPIRED_CLOSE = 4403
"""The close code of a socket whose access token expired (graphql-ws's Forbidden)."""

_SUBSCRIPTION_TRANSPORTS = (
    "subscriptions are streamed: open a websocket to /graphql (graphql-transport-ws or "
    "graphql-ws), or POST with `Accept: multipart/mixed;subscriptionSpec=1.0` "
    "or `Accept: text/event-stream`"
)


class _TextFrames(ASGIWebSocketAdapter):
    """Sends every message as a text frame: both websocket protocols are JSON in text frames."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


class _RequestError(Exception):
    """A request refused before GraphQL runs, answered as a typed GraphQL error."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _GraphQL(GraphQL[GatewayContext, None]):
    websocket_adapter_class = _TextFrames

    def __init__(self, services: GatewayServices, limits: GatewayLimits, metrics: GatewayMetrics):
        schema = build_schema(
            max_depth=limits.max_depth,
            max_tokens=limits.max_tokens,
            max_aliases_count=limits.max_aliases,
            count_error=metrics.error,
        )
        super().__init__(
            schema, graphql_ide="graphiql", subscription_protocols=SUBSCRIPTION_PROTOCOLS
        )
        self._services = services
        self._metrics = metrics
        self._expiries: set[asyncio.Task[None]] = set()

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    async def render_graphql_ide(self, request: Request) -> Response:
        return explorer.render(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive=receive, send=send)
            try:
                await self.run(websocket)
            finally:
                expiry = scope.get("state", {}).get("token_expiry")
                if expiry is not None:
                    expiry.cancel()
            return
        request = Request(scope, receive=receive)
        response: Response
        try:
            response = await self.run(request)
        except HTTPException as error:
            response = refusal(request, error.status_code, ErrorCode.VALIDATION, error.reason)
        except _RequestError as error:
            response = refusal(request, error.status, error.code, str(error))
        await response(scope, receive, send)

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: GatewayContext,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        if isinstance(request_data, GraphQLRequestData) and _plain_subscription(request_data):
            raise _RequestError(400, ErrorCode.VALIDATION, _SUBSCRIPTION_TRANSPORTS)
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers.get("accept", ""))
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        media_type = sub_response.media_type or "application/json"
        status = 200
        request_error = isinstance(response_data, dict) and _request_error(response_data)
        if media_type == GRAPHQL_RESPONSE and request_error:
            # Parse, validation and variable errors: nothing ran, so no `data` entry at all.
            assert isinstance(response_data, dict)
            response_data.pop("data", None)
            status = 400
        response = Response(self.encode_json(response_data), status, media_type=media_type)
        response.headers.raw.extend(
            (k, v) for k, v in sub_response.headers.raw if k != b"content-type"
        )
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return response

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
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
        websocket = context.request
        header = str(params.get("authorization") or params.get("Authorization") or "")
        if not header:
            header = websocket.headers.get("authorization", "")
        token = _bearer(header)
        if not token:
            return
        try:
            context.principal, expires = self._services.tokens.verify_until(token)
        except GatewayError as error:
            rejection: dict[str, object] = {"code": error.code.value, "message": str(error)}
            raise ConnectionRejectionError(rejection) from None
        assert isinstance(websocket, WebSocket)
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires - time.time())
        state = websocket.scope.setdefault("state", {})
        state["token_expiry"] = loop.call_later(delay, self._expire, websocket)

    def _expire(self, websocket: WebSocket) -> None:
        """The socket's token expired: close it, so no event reaches a client signed out."""
        task = asyncio.get_running_loop().create_task(
            websocket.close(TOKEN_EXPIRED_CLOSE, "the access token has expired; refresh it")
        )
        self._expiries.add(task)
        task.add_done_callback(self._expiries.discard)


def refusal(
    request: Request,
    status: int,
    code: ErrorCode,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A request refused before GraphQL ran: one typed error, in the media type asked for."""
    media_type = response_media_type(request.headers.get("accept", ""))
    body = error_body(code, message)
    if media_type == GRAPHQL_RESPONSE:
        del body["data"]
    return Response(orjson.dumps(body), status, headers=headers, media_type=media_type)


def response_media_type(accept: str) -> str:
    """`application/graphql-response+json` where the client asks for it first, else JSON."""
    wanted = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    for media_type in wanted:
        if media_type == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media_type in ("application/json", "application/*", "*/*"):
            return "application/json"
    return "application/json"


def _request_error(body: Mapping[str, object]) -> bool:
    """No data, and no error belongs to a field: the request failed before execution."""
    errors = body.get("errors")
    if body.get("data") is not None or not isinstance(errors, list) or not errors:
        return False
    return not any(isinstance(e, dict) and "path" in e for e in errors)


def _plain_subscription(request_data: GraphQLRequestData) -> bool:
    """A subscription sent as a plain request, where only a stream can carry it."""
    if request_data.protocol != "http" or not request_data.query:
        return False
    if "subscription" not in request_data.query:
        return False
    try:
        document = parse(request_data.query)
    except GraphQLError:
        return False  # answered by GraphQL itself as a parse error
    operation = get_operation_ast(document, request_data.operation_name)
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


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
        loop_lag: LoopLag | None = None,
    ) -> None:
        self._app = app
        self._services = services
        self._limiter = limiter
        self._limits = limits
        self._metrics = metrics
        self._loop_lag = loop_lag
        # Admission: past its capacity the gateway refuses at once rather than let every
        # request wait in a queue without bound (Little's law: the wait grows with the queue).
        self._places = asyncio.Semaphore(limits.max_in_flight)

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
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if not await self._admitted():
            self._metrics.error(ErrorCode.UNAVAILABLE.value)
            self._metrics.shed.inc()
            busy = refusal(
                Request(scope),
                503,
                ErrorCode.UNAVAILABLE,
                "the gateway is at capacity: retry in 1 s",
                headers={"Retry-After": "1"},
            )
            await busy(scope, receive, send)
            return
        try:
            await self._admitted_call(scope, receive, send)
        finally:
            self._places.release()

    async def _admitted(self) -> bool:
        """A place among the requests in flight, waiting `admission_wait` at most; none while
        the event loop runs late."""
        if self._loop_lag is not None and self._loop_lag.seconds > self._limits.max_loop_lag:
            return False
        if not self._places.locked():
            await self._places.acquire()
            return True
        try:
            await asyncio.wait_for(self._places.acquire(), self._limits.admission_wait)
        except TimeoutError:
            return False
        return True

    async def _admitted_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        # GET too: a query in the URL is a GraphQL request like any other.
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
            await _too_large(request, limit)(scope, receive, send)

    async def _refusal(self, request: Request) -> Response | None:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_request_bytes:
            return _too_large(request, self._limits.max_request_bytes)
        principal: Principal | None = None
        token = _bearer(request.headers.get("authorization", ""))
        if token:
            try:
                principal = self._services.tokens.verify(token)
            except GatewayError as error:
                self._metrics.error(error.code.value)
                return refusal(request, 401, error.code, str(error))
            request.scope.setdefault("state", {})["principal"] = principal
        client = request.client.host if request.client else "unknown"
        buckets = [(f"ip:{client}", self._limits.per_ip)]
        if principal is not None:
            buckets.append((f"user:{principal.user_id}", self._limits.per_user))
        wait = await self._over_limit(buckets)
        if wait > 0:
            self._metrics.error(ErrorCode.RATE_LIMITED.value)
            # Retry-After counts whole seconds; the message says the same number.
            seconds = max(1, math.ceil(wait))
            return refusal(
                request,
                429,
                ErrorCode.RATE_LIMITED,
                f"too many requests; retry in {seconds} s",
                headers={"Retry-After": str(seconds)},
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


def _too_large(request: Request, limit: int) -> Response:
    return refusal(request, 413, ErrorCode.VALIDATION, f"the request body is over {limit} bytes")


def probe_routes(
    checks: Mapping[str, ReadinessCheck],
    registry: CollectorRegistry,
    *,
    check_timeout: float = 2.0,
) -> list[Route]:
    """`/healthz` (the process lives), `/readyz` (every check answers; 503 naming those that
    do not) and `/metrics` (the registry): what every long-running process serves."""

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
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_page),
    ]


def build_app(
    services: GatewayServices,
    limiter: RateLimiter,
    limits: GatewayLimits,
    checks: Mapping[str, ReadinessCheck],
    *,
    check_timeout: float = 2.0,
    registry: CollectorRegistry | None = None,
    tracing: TracerProvider | None = None,
    loop_lag: LoopLag | None = None,
) -> ASGIApp:
    """The gateway, given its services, limits and a readiness check per dependency.

    With `loop_lag` (sampling the loop it serves on), requests are refused while it runs late.

    `/metrics` serves `registry`: the gateway's own metrics and whatever else the process puts
    there (the system monitor's gauges). With `tracing`, every HTTP request is a server span
    (continuing the caller's `traceparent`); the commands it runs are its children.
    """
    metrics = GatewayMetrics(registry)

    graphql = GraphQLGate(
        _GraphQL(services, limits, metrics), services, limiter, limits, metrics, loop_lag
    )
    app = Starlette(
        routes=[
            *probe_routes(checks, metrics.registry, check_timeout=check_timeout),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *explorer.routes,
        ],
    )
    measured = _Measured(app, metrics)
    if tracing is None or isinstance(tracing, NoOpTracerProvider):
        return measured
    return OpenTelemetryMiddleware(
        measured,
        excluded_urls=_UNTRACED,
        tracer_provider=tracing,
        # A span per websocket frame would drown a subscription's trace.
        exclude_spans=["receive", "send"],
    )


_UNTRACED = "/healthz,/readyz,/metrics,/graphiql"
"""Probes, scrapes and static assets: no request of a user, nothing to follow."""

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
