"""The gateway's Prometheus metrics, on the registry it is given (the platform's; never global)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """Requests, latency, errors by code and open subscription connections."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "sutazai_http_requests", "HTTP requests", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sutazai_http_request_seconds",
            "HTTP request latency",
            ["path"],
            registry=self.registry,
        )
        self.errors = Counter(
            "sutazai_graphql_errors", "GraphQL errors by code", ["code"], registry=self.registry
        )
        self.shed = Counter(
            "sutazai_http_shed",
            "GraphQL requests refused at once because the gateway had as many in flight as it"
            " takes (503, UNAVAILABLE)",
            registry=self.registry,
        )
        self.subscriptions = Gauge(
            "sutazai_graphql_subscription_connections",
            "Open websocket connections (graphql-transport-ws)",
            registry=self.registry,
        )
        self.live_subscriptions = Gauge(
            "sutazai_graphql_subscriptions_live",
            "Subscriptions whose source is live: their start in the log fixed, their interest"
            " known to NATS (every event from here on reaches them)",
            ["field"],
            registry=self.registry,
        )

    def error(self, code: str) -> None:
        """Count one error answered with `code`."""
        self.errors.labels(code).inc()
