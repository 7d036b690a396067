"""OpenTelemetry set-up and W3C trace context carried in Kafka headers.

The runtime injects ``traceparent``/``tracestate`` when a message is created (so a message
published later, e.g. from an outbox, still continues the trace of the handler that made it) and
extracts them when a message is consumed. Handlers never touch trace context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from events.settings import Settings

Headers = list[tuple[str, bytes]]

_configured: set[str] = set()


def configure_tracing(service_name: str, settings: Settings) -> None:
    """Export this process's spans over OTLP as ``service.name=service_name`` (once)."""
    if not settings.tracing_enabled or _configured:
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint, insecure=True)
        )
    )
    trace.set_tracer_provider(provider)
    _configured.add(service_name)


def shutdown_tracing() -> None:
    """Flush spans still buffered; call on process exit."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()


def inject(headers: Headers, ctx: otel_context.Context | None = None) -> None:
    """Append the W3C trace context of ``ctx`` (default: the current one) to ``headers``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    headers.extend((key, value.encode()) for key, value in carrier.items())


class _HeaderGetter(Getter[Mapping[str, bytes]]):
    def get(self, carrier: Mapping[str, bytes], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: Mapping[str, bytes]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def extract(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    """The trace context carried by Kafka headers (empty context when there is none)."""
    return propagate.extract(dict(headers or ()), getter=_GETTER)
