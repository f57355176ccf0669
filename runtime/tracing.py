"""Tracing: an OpenTelemetry tracer provider built from the settings, or none at all.

Off by default: the API's no-op provider records nothing and costs next to nothing. With
`SUTAZAI_OTLP_ENDPOINT` set, spans are batched and sent over OTLP/HTTP. The provider is handed
down by the composition root (never set as the process's global), so a test can pass one with
an in-memory exporter.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracerProvider, TracerProvider

from runtime.settings import Settings


def tracer_provider(settings: Settings, part: str) -> TracerProvider:
    """The provider for a process running `part` (gateway, agents, projections...)."""
    if not settings.otlp_endpoint:
        return NoOpTracerProvider()
    resource = Resource.create({SERVICE_NAME: f"{settings.service_name}-{part}"})
    provider = SdkTracerProvider(resource=resource)
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def shut_down(provider: TracerProvider) -> None:
    """Send what is batched and stop (an SDK provider; the no-op one has nothing to send)."""
    if isinstance(provider, SdkTracerProvider):
        provider.shutdown()
