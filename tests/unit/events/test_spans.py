"""The runtime's spans export exactly what the SDK's spans export for the same calls.

Each scenario runs twice, once through the SDK's tracer and once through
:class:`~events.spans.RuntimeTracer`, on providers alike down to their id generator and a
clock that ticks the same; every span that ends (sampled or not) is encoded by the SDK's own
OTLP encoder and the two requests are compared whole.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from events import spans as runtime_spans
from events.spans import RuntimeSpan, RuntimeTracer

Tracer = trace.Tracer | RuntimeTracer
Scenario = Callable[[Any, TracerProvider], object]
PROPAGATOR = TraceContextTextMapPropagator()
DEFAULT_SAMPLER = ParentBased(ALWAYS_ON)

SAMPLED_PARENT = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "choreo=1,vendor=opaque",
}
UNSAMPLED_PARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}

CONSUMER_ATTRIBUTES: dict[str, AttributeValue] = {
    "messaging.system": "kafka",
    "messaging.operation.type": "process",
    "messaging.destination.name": "c1.order",
    "messaging.destination.partition.id": "2",
    "messaging.kafka.offset": 4711,
    "messaging.kafka.message.key": "ord-1",
    "messaging.consumer.group.name": "payment",
    "choreo.event_type": "order.placed",
    "choreo.order_id": "ord-1",
    "messaging.message.id": "5a7c0f7e-0000-4000-8000-000000000000",
    "choreo.handler": "services.payment.handlers.charge",
    "choreo.attempt": 1,
    "choreo.ratio": 0.5,
    "choreo.redelivered": False,
}


class CountingIds(IdGenerator):
    """Ids 1, 2, 3, ... in the order they are asked for."""

    def __init__(self, random: bool) -> None:
        self._next = itertools.count(1)
        self._random = random

    def generate_span_id(self) -> int:
        return next(self._next)

    def generate_trace_id(self) -> int:
        return (7 << 64) + next(self._next)

    def is_trace_id_random(self) -> bool:
        return self._random


class Ended(SpanProcessor):
    """Every span that ends, sampled or not."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _request(ended: Sequence[ReadableSpan]) -> dict[str, Any]:
    request = MessageToDict(encode_spans(ended))
    for resource in request.get("resourceSpans", []):
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for event in span.get("events", []):
                    for attribute in event.get("attributes", []):
                        if attribute["key"] == "exception.stacktrace":
                            # The frames differ where the two tracers catch it; its last line
                            # (type and message) is what is compared.
                            value = attribute["value"]
                            value["stringValue"] = value["stringValue"].splitlines()[-1]
    return request


def run_both(
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sampler: Sampler = DEFAULT_SAMPLER,
    limits: SpanLimits | None = None,
    random_ids: bool = False,
) -> tuple[dict[str, Any], list[ReadableSpan]]:
    """The request both tracers' ended spans encode to (asserted equal), and the runtime's
    ended spans; what the scenario returns is compared too."""
    outcomes = []
    for runtime in (False, True):
        clock = itertools.count(1_700_000_000_000_000_000, 1_000).__next__
        monkeypatch.setattr(sdk_trace, "time_ns", clock)
        monkeypatch.setattr(runtime_spans, "time_ns", clock)
        provider = TracerProvider(
            resource=Resource.create({"service.name": "payment"}),
            sampler=sampler,
            id_generator=CountingIds(random_ids),
            span_limits=limits,
        )
        ended = Ended()
        provider.add_span_processor(ended)
        tracer: Tracer = (
            RuntimeTracer("choreo.events", provider)
            if runtime
            else provider.get_tracer("choreo.events")
        )
        returned = scenario(tracer, provider)
        outcomes.append((_request(ended.spans), returned, ended.spans))
    (sdk_request, sdk_returned, _), (request, returned, ended_spans) = outcomes
    assert request == sdk_request
    assert returned == sdk_returned
    return request, ended_spans


def _spans_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        span
        for resource in request.get("resourceSpans", [])
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


def test_a_consumer_span_its_handler_span_and_a_database_span_inside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        carrier: dict[str, str] = {}
        with (
            tracer.start_as_current_span(
                "c1.order process",
                context=PROPAGATOR.extract(SAMPLED_PARENT),
                kind=SpanKind.CONSUMER,
                attributes=CONSUMER_ATTRIBUTES,
            ),
            tracer.start_as_current_span(
                "handle order.placed", attributes={"choreo.handler": "charge"}
            ),
        ):
            # What the asyncpg instrumentation does inside a handler: the SDK's own span.
            database = provider.get_tracer("asyncpg")
            with database.start_as_current_span("INSERT", kind=SpanKind.CLIENT):
                pass
            PROPAGATOR.inject(carrier)  # what the handler's outgoing messages carry
        return carrier

    request, ended = run_both(scenario, monkeypatch)
    spans = _spans_of(request)
    assert [s["name"] for s in spans] == ["INSERT", "handle order.placed", "c1.order process"]
    assert spans[0]["parentSpanId"] == spans[1]["spanId"]
    assert spans[1]["parentSpanId"] == spans[2]["spanId"]
    assert spans[2]["traceState"] == "choreo=1,vendor=opaque"
    assert len(spans[2]["attributes"]) == len(CONSUMER_ATTRIBUTES)
    # The SDK hands its processors a copy of each span; the runtime, the span itself.
    assert [type(s) for s in ended] == [ReadableSpan, RuntimeSpan, RuntimeSpan]


def test_a_root_span_gets_a_new_trace_with_or_without_random_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with tracer.start_as_current_span(
            "c1.order create", context=otel_context.Context(), kind=SpanKind.PRODUCER
        ):
            carrier: dict[str, str] = {}
            PROPAGATOR.inject(carrier)
        return carrier

    for random_ids in (False, True):
        request, _ = run_both(scenario, monkeypatch, random_ids=random_ids)
        [span] = _spans_of(request)
        assert "parentSpanId" not in span
        assert span["kind"] == "SPAN_KIND_PRODUCER"


def test_an_exception_leaving_the_block_is_recorded_and_sets_the_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with (
            pytest.raises(ValueError, match="card declined"),
            tracer.start_as_current_span("c1.payment process"),
        ):
            raise ValueError("card declined")
        return trace.get_current_span() is trace.INVALID_SPAN  # the context was restored

    request, _ = run_both(scenario, monkeypatch)
    [span] = _spans_of(request)
    assert span["status"] == {"code": "STATUS_CODE_ERROR", "message": "ValueError: card declined"}
    assert span["events"][0]["name"] == "exception"


def test_what_the_tracing_interceptor_records_on_a_failing_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with tracer.start_as_current_span("c1.payment process", kind=SpanKind.CONSUMER):
            span = trace.get_current_span()
            span.record_exception(TimeoutError("gateway timed out"))
            span.add_event("retry_scheduled", {"attempt": 2, "delay_s": 0.5})
            span.add_event("deferred", {"provider": "gateway", "reason": "open", "delay_s": 1.0})
            span.set_attribute("choreo.batch.size", 3)
            span.set_attributes({"choreo.attempt": 2, "choreo.handler": "charge"})
            span.update_name("c1.payment process (retried)")
            span.add_link(trace.SpanContext(5, 6, is_remote=True), {"why": "redelivery"})
            span.set_status(Status(StatusCode.ERROR, "gave up"))
            span.set_status(StatusCode.OK)  # OK wins over error, as the API says
            span.set_status(Status(StatusCode.ERROR, "ignored after OK"))
        return None

    request, _ = run_both(scenario, monkeypatch)
    [span] = _spans_of(request)
    assert [e["name"] for e in span["events"]] == ["exception", "retry_scheduled", "deferred"]
    assert [link["spanId"] for link in span["links"]] == ["AAAAAAAAAAY="]
    assert span["status"] == {"code": "STATUS_CODE_OK"}


def test_values_the_sdk_converts_or_refuses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    odd: dict[str, Any] = {
        "texts": ["a", "b"],
        "numbers": (1, 2),
        "a mapping": {"not": "allowed"},
        "nothing": None,
        "": "an empty key",
        "bytes": b"raw",
        "mixed": [1, "a"],
        "fine": "kept",
    }

    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with tracer.start_as_current_span("odd", attributes=odd) as span:
            span.set_attributes(odd)
            span.set_attribute("late", ["x"])
        return None

    with caplog.at_level(logging.WARNING):
        request, _ = run_both(scenario, monkeypatch)
    [span] = _spans_of(request)
    assert {a["key"] for a in span["attributes"]} >= {"texts", "numbers", "bytes", "fine", "late"}
    assert "" not in {a["key"] for a in span["attributes"]}
    assert caplog.records  # the SDK's warnings, logged for both


def test_an_empty_key_among_plain_values_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with tracer.start_as_current_span("plain", attributes={"": "x", "fine": 1}) as span:
            span.set_attributes({"": "y", "also": 2})
        return None

    request, _ = run_both(scenario, monkeypatch)
    [span] = _spans_of(request)
    assert [a["key"] for a in span["attributes"]] == ["fine", "also"]


def test_a_length_limit_cuts_plain_values(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with tracer.start_as_current_span("cut", attributes={"a": "12345"}) as span:
            span.set_attribute("b", "abcdef")
        return None

    limits = SpanLimits(max_span_attribute_length=4)
    request, _ = run_both(scenario, monkeypatch, limits=limits)
    [span] = _spans_of(request)
    assert [a["value"]["stringValue"] for a in span["attributes"]] == ["1234", "abcd"]


def test_span_limits_bound_attributes_and_events(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = SpanLimits(max_span_attributes=3, max_events=1)

    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with tracer.start_as_current_span("limited", attributes={"a": 1, "b": 2}) as span:
            span.set_attributes({"c": 3, "d": 4})
            span.add_event("one")
            span.add_event("two")
        return None

    request, ended = run_both(scenario, monkeypatch, limits=limits)
    [span] = _spans_of(request)
    assert span["droppedAttributesCount"] == 1
    assert span["droppedEventsCount"] == 1
    assert [a["key"] for a in span["attributes"]] == ["b", "c", "d"]  # the oldest went
    assert ended[0].dropped_attributes == 1


def test_a_given_start_time_and_what_happens_after_the_end(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        span = tracer.start_span(
            "c1.order project",
            context=PROPAGATOR.extract(SAMPLED_PARENT),
            kind=SpanKind.CONSUMER,
            attributes={"choreo.order_id": "ord-1"},
            start_time=1_600_000_000_000_000_000,
        )
        span.end()
        span.set_attribute("after", 1)
        span.add_event("after")
        span.end()
        return span.is_recording()

    with caplog.at_level(logging.WARNING):
        request, _ = run_both(scenario, monkeypatch)
    [span] = _spans_of(request)
    assert span["startTimeUnixNano"] == "1600000000000000000"
    assert "events" not in span
    assert len(caplog.records) == 6  # three warnings for each tracer


def test_unsampled_spans_are_not_recorded_but_their_context_travels_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        carriers = []
        for parent in (SAMPLED_PARENT, {}):
            with tracer.start_as_current_span("hop", context=PROPAGATOR.extract(parent)) as span:
                carrier: dict[str, str] = {}
                PROPAGATOR.inject(carrier)
                carriers.append((span.is_recording(), carrier))
        return carriers

    request, _ = run_both(scenario, monkeypatch, sampler=ParentBased(TraceIdRatioBased(0.0)))
    [span] = _spans_of(request)  # only the child of the sampled parent
    assert span["parentSpanId"]


@pytest.mark.parametrize("sampler", [DEFAULT_SAMPLER, ParentBased(TraceIdRatioBased(0.1))])
def test_a_hop_of_an_unsampled_trace_is_its_parents_context(sampler: Sampler) -> None:
    """Where the sampler follows an unsampled parent (the SDK's parent-based samplers), the
    runtime makes no span at all, unlike the SDK's dropped span with an id of its own: the
    parent's context goes on, unsampled, to what the hop publishes."""
    provider = TracerProvider(sampler=sampler)
    ended = Ended()
    provider.add_span_processor(ended)
    tracer = RuntimeTracer("choreo.events", provider)
    unsampled = PROPAGATOR.extract(UNSAMPLED_PARENT)
    assert tracer.dropped(unsampled)
    assert not tracer.dropped(PROPAGATOR.extract(SAMPLED_PARENT))
    assert not tracer.dropped(PROPAGATOR.extract({}))  # a root: the sampler decides
    carrier: dict[str, str] = {}
    with (
        tracer.start_as_current_span("hop", context=unsampled) as span,
        tracer.start_as_current_span("handle") as inner,
    ):
        PROPAGATOR.inject(carrier)
    assert not span.is_recording()
    assert not inner.is_recording()
    assert carrier == UNSAMPLED_PARENT
    assert ended.spans == []


@pytest.mark.parametrize(
    "sampler",
    [ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON), TraceIdRatioBased(1.0)],
)
def test_a_sampler_that_may_sample_under_an_unsampled_parent_still_decides(
    sampler: Sampler,
) -> None:
    provider = TracerProvider(sampler=sampler)
    tracer = RuntimeTracer("choreo.events", provider)
    unsampled = PROPAGATOR.extract(UNSAMPLED_PARENT)
    assert not tracer.dropped(unsampled)
    with tracer.start_as_current_span("hop", context=unsampled) as span:
        assert span.is_recording()


class RecordOnly(Sampler):
    """Records without sampling, and adds an attribute and a trace state of its own."""

    def should_sample(self, parent_context: Any, trace_id: int, *args: Any, **kwargs: Any) -> Any:
        state = trace.TraceState([("sampler", "record-only")])
        return SamplingResult(Decision.RECORD_ONLY, {"sampler.note": "kept"}, state)

    def get_description(self) -> str:
        return "RecordOnly"


def test_a_samplers_decision_attributes_and_trace_state(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        with tracer.start_as_current_span("recorded", attributes={"mine": 1}) as span:
            return span.is_recording(), span.get_span_context().trace_flags.sampled

    request, _ = run_both(scenario, monkeypatch, sampler=RecordOnly())
    [span] = _spans_of(request)
    assert span["traceState"] == "sampler=record-only"
    assert [a["key"] for a in span["attributes"]] == ["sampler.note"]  # the sampler's, as the SDK


def test_a_span_with_links_is_made_by_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(tracer: Tracer, provider: TracerProvider) -> object:
        linked = trace.SpanContext(5, 6, is_remote=True, trace_flags=trace.TraceFlags(1))
        with tracer.start_as_current_span(
            "outbox send", kind=SpanKind.PRODUCER, links=[Link(linked, {"n": 1})]
        ):
            pass
        return None

    request, ended = run_both(scenario, monkeypatch)
    assert _spans_of(request)[0]["links"]
    assert type(ended[0]) is ReadableSpan


def test_without_the_sdks_provider_the_providers_own_tracer_is_used() -> None:
    tracer = RuntimeTracer("choreo.events", trace.NoOpTracerProvider())
    with pytest.raises(RuntimeError, match="passes through"), tracer.start_as_current_span("x"):
        raise RuntimeError("passes through")
    with tracer.start_as_current_span("nothing", attributes={"a": 1}) as span:
        assert not span.is_recording()
    assert tracer.start_span("nothing") is trace.INVALID_SPAN


def test_the_global_provider_is_looked_up_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracer = RuntimeTracer("choreo.events")
    first, second = TracerProvider(), TracerProvider()
    for provider in (first, second):
        ended = Ended()
        provider.add_span_processor(ended)
        monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
        tracer.start_span("x").end()
        assert [s.name for s in ended.spans] == ["x"]
