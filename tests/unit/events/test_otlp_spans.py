"""The trace exporter's own encoding gives the very request the SDK's encoder gives."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from events import otlp_spans
from events.otlp_spans import ChoreoSpanExporter, encode_request

REMOTE_PARENT = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "choreo=1,vendor=opaque",
}

EVERY_ATTRIBUTE_TYPE: dict[str, AttributeValue] = {
    "text": "order.placed",
    "empty text": "",
    "non-ascii": "Zoë → 東京",
    "long text": "x" * 300,
    "zero": 0,
    "small": 7,
    "negative": -12345,
    "large": 2**62 + 3,
    "most negative": -(2**63),
    "ratio": 0.25,
    "negative ratio": -1.5e-9,
    "true": True,
    "false": False,
    "texts": ("a", "", "ü"),
    "numbers": (1, -2, 2**40),
    "ratios": (0.5, 2.0),
    "flags": (True, False),
    "nothing": (),
    "with a gap": ("a", None, "c"),
}


def recorder(
    service: str = "payment", limits: SpanLimits | None = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}, schema_url="https://schema/1"),
        span_limits=limits,
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def assert_encodes_as_the_sdk(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)
    assert len(ours.resource_spans) >= 1


def test_a_consumer_span_under_a_remote_parent_and_its_handler_span() -> None:
    provider, exporter = recorder()
    tracer = provider.get_tracer("choreo")
    parent = TraceContextTextMapPropagator().extract(REMOTE_PARENT)
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.destination.name": "orders",
        "messaging.kafka.offset": 4711,
        "choreo.order_id": "ord-1",
        "choreo.attempt": 1,
    }
    with (
        tracer.start_as_current_span(
            "orders process", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ),
        tracer.start_as_current_span("handle order.placed", attributes={"choreo.x": "y"}),
    ):
        pass
    spans = list(exporter.get_finished_spans())
    assert spans[1].parent is not None
    assert spans[1].parent.is_remote
    assert spans[1].context is not None
    assert spans[1].context.trace_state
    assert_encodes_as_the_sdk(spans)


def test_every_attribute_type_the_sdk_accepts_on_spans_events_and_links() -> None:
    provider, exporter = recorder()
    tracer = provider.get_tracer("choreo", "1.2.3", schema_url="https://schema/scope")
    with tracer.start_as_current_span("linked") as linked:
        link = Link(linked.get_span_context(), EVERY_ATTRIBUTE_TYPE)
    with tracer.start_as_current_span(
        "everything", kind=SpanKind.PRODUCER, attributes=EVERY_ATTRIBUTE_TYPE, links=[link]
    ) as span:
        span.add_event("retry_scheduled", EVERY_ATTRIBUTE_TYPE)
        span.add_event("bare")
    assert_encodes_as_the_sdk(list(exporter.get_finished_spans()))


def test_failed_spans_with_their_exception_and_status() -> None:
    provider, exporter = recorder()
    tracer = provider.get_tracer("choreo")
    with (
        pytest.raises(ValueError, match="card declined"),
        tracer.start_as_current_span("payment.requested process", kind=SpanKind.CLIENT),
    ):
        raise ValueError("card declined " * 20)
    with tracer.start_as_current_span("described", kind=SpanKind.SERVER) as span:
        span.set_status(Status(StatusCode.ERROR, "gateway timed out"))
    with tracer.start_as_current_span("fine") as span:
        span.set_status(Status(StatusCode.OK))
    spans = list(exporter.get_finished_spans())
    assert spans[0].status.status_code is StatusCode.ERROR
    assert spans[0].events
    assert_encodes_as_the_sdk(spans)


def test_dropped_attributes_events_and_links_are_counted() -> None:
    limits = SpanLimits(max_attributes=2, max_events=1, max_links=1, max_event_attributes=1)
    provider, exporter = recorder(limits=limits)
    tracer = provider.get_tracer("choreo")
    with tracer.start_as_current_span("a") as first, tracer.start_as_current_span("b") as second:
        links = [Link(first.get_span_context()), Link(second.get_span_context())]
    with tracer.start_as_current_span("limited", attributes={"a": 1, "b": 2, "c": 3}, links=links):
        span = trace.get_current_span()
        span.add_event("one", {"x": 1, "y": 2})
        span.add_event("two")
    spans = list(exporter.get_finished_spans())
    assert spans[-1].dropped_attributes == 1
    assert spans[-1].dropped_events == 1
    assert spans[-1].dropped_links == 1
    assert_encodes_as_the_sdk(spans)


def test_spans_of_two_resources_and_scopes_in_one_batch_are_grouped_as_the_sdk_groups_them() -> (
    None
):
    payment, payment_spans = recorder("payment")
    shipping, shipping_spans = recorder("shipping")
    for index in range(3):
        for provider in (payment, shipping):
            for scope in ("choreo", "choreo.outbox"):
                with provider.get_tracer(scope).start_as_current_span(f"span {index}"):
                    pass
    spans = list(payment_spans.get_finished_spans())
    spans[1:1] = shipping_spans.get_finished_spans()  # interleaved, as a shared queue could
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert [len(r.scope_spans) for r in ours.resource_spans] == [2, 2]
    assert ours == encode_spans(spans)


def test_a_large_batch_of_long_spans() -> None:
    provider, exporter = recorder()
    tracer = provider.get_tracer("choreo")
    many = {f"attribute {n}": "v" * n for n in range(200)}
    for _ in range(50):
        with tracer.start_as_current_span("wide", attributes=many):
            pass
    spans = list(exporter.get_finished_spans())
    assert len(encode_request(spans)) > 50 * 20_000  # lengths of several varint bytes
    assert_encodes_as_the_sdk(spans)


def test_a_value_no_sdk_span_holds_is_left_out_and_logged_like_the_sdk_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, exporter = recorder()
    with provider.get_tracer("choreo").start_as_current_span("ok"):
        pass
    (finished,) = exporter.get_finished_spans()
    forged = ReadableSpan(
        name="hand made",
        context=finished.context,
        resource=finished.resource,
        attributes={"kept": "yes", "refused": object()},  # type: ignore[dict-item]
        start_time=1,
        end_time=2,
    )
    with caplog.at_level(logging.ERROR):
        assert_encodes_as_the_sdk([forged])
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_the_exporter_sends_our_encoding_of_the_request_the_sdk_would_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, exporter = recorder()
    token = otel_context.attach(TraceContextTextMapPropagator().extract(REMOTE_PARENT))
    try:
        with provider.get_tracer("choreo").start_as_current_span("publish"):
            pass
    finally:
        otel_context.detach(token)
    spans = list(exporter.get_finished_spans())
    encoded: list[int] = []

    def counted(batch: list[ReadableSpan]) -> bytes:
        encoded.append(len(batch))
        return encode_request(batch)

    class Collector:  # stands in for the gRPC stub: what would go over the wire
        requests: list[ExportTraceServiceRequest] = []

        def Export(self, request: ExportTraceServiceRequest, **_: object) -> None:
            self.requests.append(request)

    monkeypatch.setattr(otlp_spans, "encode_request", counted)
    sender = ChoreoSpanExporter(endpoint="http://127.0.0.1:1", insecure=True)
    sender._client = Collector()  # type: ignore[assignment]
    try:
        assert sender.export(spans) is SpanExportResult.SUCCESS
    finally:
        sender.shutdown()
    assert encoded == [1]
    assert Collector.requests == [encode_spans(spans)]


def test_equal_resources_and_scopes_of_distinct_objects_share_one_group() -> None:
    first, first_spans = recorder("payment")
    second, second_spans = recorder("payment")
    for provider in (first, second):
        with provider.get_tracer("choreo").start_as_current_span("span"):
            pass
    spans = [*first_spans.get_finished_spans(), *second_spans.get_finished_spans()]
    assert spans[0].resource is not spans[1].resource
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert [len(r.scope_spans) for r in ours.resource_spans] == [1]
    assert ours == encode_spans(spans)
