"""OpenTelemetry set-up and W3C trace context carried in Kafka headers.

Every process calls :func:`configure_telemetry` once: spans and metrics go over OTLP to the
collector (Jaeger), each unless switched off (``CHOREO_TRACING_ENABLED``,
``CHOREO_METRICS_ENABLED``); with ``CHOREO_TRACING_DB_SPANS=true`` asyncpg calls also become
database spans under the current span (off by default: a span per statement was most of a
trace's spans and of its cost). The runtime injects ``traceparent``/``tracestate`` when a
message is created (so a message published later, e.g. from an outbox, still continues the
trace of the handler that made it) and extracts them when a message is consumed.
Handlers never touch trace context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource

from events.settings import Settings

Headers = list[tuple[str, bytes]]

_configured: set[str] = set()
_db_spans = False
"""Whether asyncpg's instrumentation makes database spans in this process."""


def configure_telemetry(service_name: str, settings: Settings) -> None:
    """Export this process's spans and metrics over OTLP as ``service.name=service_name``.

    Spans unless ``CHOREO_TRACING_ENABLED=false`` (they are then no-ops and no trace context
    is propagated), metrics unless ``CHOREO_METRICS_ENABLED=false``: a platform that leaves
    tracing off for its cost still reports its metrics. Does nothing when called again.
    """
    if _configured or not (settings.tracing_enabled or settings.metrics_enabled):
        return
    resource = _HashedOnce(Resource.create({"service.name": service_name}))
    if settings.tracing_enabled:
        _export_spans(resource, settings)
    if settings.metrics_enabled:
        _export_metrics(resource, settings)
    _configured.add(service_name)


def _export_spans(resource: Resource, settings: Settings) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from events.otlp_spans import ChoreoSpanExporter

    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(
            ChoreoSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint, insecure=True),
            # Big batches: an export's fixed cost (a gRPC call, the resource's grouping) is
            # shared by more spans, and a burst's spans fit in the queue instead of dropping.
            schedule_delay_millis=1000,
            max_export_batch_size=2048,
            max_queue_size=16384,
        )
    )
    trace.set_tracer_provider(provider)
    if settings.tracing_db_spans:
        instrument_database()


def instrument_database() -> None:
    """Make asyncpg's calls database spans under the current span (``housekeeping()`` blocks
    excepted)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    global _db_spans
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    _db_spans = True


def _export_metrics(resource: Resource, settings: Settings) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=settings.otel_exporter_otlp_endpoint, insecure=True),
        export_interval_millis=settings.metrics_export_interval_ms,
    )
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


class _HashedOnce(Resource):
    """A process's resource, hashed once: the OTLP encoder groups every exported span by its
    resource, and the SDK's hash serialises the attributes to JSON each time."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def housekeeping() -> contextlib.AbstractContextManager[None]:
    """No instrumentation spans (asyncpg's) inside the block: for the polls that run all the
    time (the outbox relay, the retry queue), each of whose queries would otherwise be a
    trace of its own, many times a second. Spans Choreo opens itself still record. Nothing
    to do without database spans (the default): the suppression's context switch cost 3.4 µs,
    several times a poll."""
    if not _db_spans:
        return contextlib.nullcontext()
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def shutdown_telemetry() -> None:
    """Flush spans and metrics still buffered; call on process exit."""
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def active() -> bool:
    """Whether a tracer provider is set (:func:`configure_telemetry`, or a test's): without one
    every span is a no-op, so the per-message sites skip their spans, their attributes and
    the trace context's parsing (about a tenth of the coordinator's CPU, untraced)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def inject(headers: Headers, ctx: otel_context.Context | None = None) -> None:
    """Append the W3C trace context of ``ctx`` (default: the current one) to ``headers``."""
    if not active():
        return
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
_EMPTY = otel_context.Context()


def extract(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    """The trace context carried by Kafka headers (empty context when there is none)."""
    if not active():
        return _EMPTY
    return propagate.extract(dict(headers or ()), getter=_GETTER)


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, to store with something that acts later."""
    if not active():
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def extract_traceparent(value: str | None) -> otel_context.Context:
    """The context a stored ``traceparent`` names (empty context when there is none)."""
    return propagate.extract({"traceparent": value} if value else {})


def consumer_attributes(
    topic: str, partition: int, offset: int, group: str, event_type: str, order_id: str
) -> dict[str, str | int]:
    """Messaging semantic-convention attributes of a consumed message's span."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "messaging.kafka.message.key": order_id,
        "messaging.consumer.group.name": group,
        "choreo.event_type": event_type,
        "choreo.order_id": order_id,
    }
