"""Without a tracer provider (``CHOREO_TRACING_ENABLED=false``) the per-message sites do no
tracing work: no span, no trace context parsed or written."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.samples import sample_order_placed
from events import tracing
from events.codec import Codec
from events.interceptors import DEFAULT_INTERCEPTORS, chain
from events.model import Message
from events.producer import to_record
from events.settings import Settings
from tests.unit.events.test_interceptors import attempt


@pytest.fixture
def no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process as it runs untraced: the global tracer provider never set."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)


def _fails(*_: object, **__: object) -> None:
    raise AssertionError("tracing work done while tracing is off")


def test_active_follows_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing.active()  # the test session's SDK provider
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    assert not tracing.active()


@pytest.mark.usefixtures("no_provider")
async def test_the_consumer_span_is_skipped(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(propagate, "extract", _fails)
    monkeypatch.setattr(tracing, "consumer_attributes", _fails)
    head = chain(DEFAULT_INTERCEPTORS)

    async def run() -> str:
        assert not trace.get_current_span().get_span_context().is_valid
        return "done"

    assert await head.deliver(attempt(), run) == "done"
    assert tracing.extract([("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]) == (
        otel_context.Context()
    )
    assert spans.get_finished_spans() == ()


@pytest.mark.usefixtures("no_provider")
def test_a_record_carries_no_trace_context(codec: Codec, spans: InMemorySpanExporter) -> None:
    message = Message.first(
        sample_order_placed(), saga_type="order", saga_key="ord-1", producer="test"
    )
    record = to_record(message, codec, Settings())
    names = [key for key, _ in record.headers]
    assert "event_id" in names
    assert "saga_key" in names
    assert "traceparent" not in names
    assert tracing.traceparent() is None
    assert spans.get_finished_spans() == ()


def test_with_a_provider_the_record_carries_its_creators_span(
    codec: Codec, spans: InMemorySpanExporter
) -> None:
    message = Message.first(
        sample_order_placed(), saga_type="order", saga_key="ord-1", producer="test"
    )
    with trace.get_tracer(__name__).start_as_current_span("creator") as creator:
        record = to_record(message, codec, Settings())
    carried = dict(record.headers)["traceparent"].decode()
    assert format(creator.get_span_context().span_id, "016x") in carried
