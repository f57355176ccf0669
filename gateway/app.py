"""The gateway's ASGI app: GraphQL (with GraphiQL), liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from gateway.schema import schema

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when a dependency answers; raises when it does not."""


class _GraphQL(GraphQL[dict[str, Any], None]):
    def __init__(self, postgres: asyncpg.Pool) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self._postgres = postgres

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        return {"request": request, "response": response, "postgres": self._postgres}


def build_app(
    postgres: asyncpg.Pool, checks: Mapping[str, ReadinessCheck], *, check_timeout: float = 2.0
) -> Starlette:
    """The gateway, given the read-side pool and a readiness check per dependency."""
    registry = CollectorRegistry()
    requests = Counter(
        "sutazai_http_requests", "HTTP requests", ["path", "status"], registry=registry
    )
    latency = Histogram(
        "sutazai_http_request_seconds", "HTTP request latency", ["path"], registry=registry
    )

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

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        path = request.url.path
        latency.labels(path).observe(time.perf_counter() - started)
        requests.labels(path, str(response.status_code)).inc()
        return response

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/graphql", _GraphQL(postgres), methods=["GET", "POST"]),
        ],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=measure)],
    )
