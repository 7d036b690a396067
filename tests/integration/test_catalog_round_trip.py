"""Every event of the catalog, through the real broker: encoded, keyed, traced, decoded, handled."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.catalog import CATALOG
from contracts.samples import EXAMPLES
from events.codec import Codec
from events.consumer import EventConsumer
from events.delivery import DirectDelivery
from events.headers import header
from events.model import Event, Message
from events.producer import EventProducer
from events.router import Router
from events.settings import Settings
from events.topics import event_topics, topic_for
from tests.integration.kafka_helpers import eventually, read_records

pytestmark = pytest.mark.integration

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


async def test_every_catalog_event_round_trips_with_envelope_and_trace_headers(
    settings: Settings, codec: Codec, topics: list[str], spans: InMemorySpanExporter
):
    # With a `create` span per message, each message's traceparent is its own span's.
    settings = settings.model_copy(update={"tracing_create_spans": True})
    first = Message.first(
        EXAMPLES["order.placed"], saga_type="order", saga_key="ord-rt-1", producer="test"
    )
    sent = [first] + [
        first.caused(example, producer="test")
        for event_type, example in EXAMPLES.items()
        if event_type != "order.placed"
    ]
    assert {m.envelope.event_type for m in sent} == set(CATALOG)
    async with EventProducer(settings, codec, client_id="test") as producer:
        await producer.publish(sent)

    records = await read_records(settings, event_topics(settings), len(sent))
    by_id = {str(m.envelope.event_id): m for m in sent}
    create_spans = {
        s.attributes["messaging.message.id"]: s
        for s in spans.get_finished_spans()
        if s.name.endswith(" create")
    }
    for record in records:
        decoded = codec.decode(record.value)
        original = by_id[str(decoded.envelope.event_id)]
        assert decoded.envelope == original.envelope
        assert decoded.event == original.event
        assert record.key == b"ord-rt-1"
        assert record.topic == topic_for(decoded.envelope.event_type, settings)
        env = original.envelope
        assert header(record.headers, "event_id") == str(env.event_id)
        assert header(record.headers, "event_type") == env.event_type
        assert header(record.headers, "saga_key") == "ord-rt-1"
        assert header(record.headers, "saga_type") == "order"
        assert header(record.headers, "correlation_id") == env.correlation_id
        assert header(record.headers, "causation_id") == env.causation_id
        assert header(record.headers, "schema_version") == str(env.schema_version)
        assert header(record.headers, "occurred_at") == env.occurred_at.isoformat()
        traceparent = header(record.headers, "traceparent")
        assert traceparent is not None
        match = TRACEPARENT.match(traceparent)
        assert match is not None, traceparent
        assert int(match.group(3), 16) & 0x01, "sampled flag"
        span = create_spans[str(env.event_id)].get_span_context()
        assert match.group(1) == format(span.trace_id, "032x")
        assert match.group(2) == format(span.span_id, "016x")
    # Causation chain: every message but the first was caused by the first.
    assert all(m.envelope.causation_id == str(first.envelope.event_id) for m in sent[1:])
    assert {m.envelope.correlation_id for m in sent} == {first.envelope.correlation_id}


@pytest.mark.parametrize("create_spans", [False, True], ids=["creator's span", "create span"])
async def test_the_runtime_dispatches_every_type_and_continues_the_trace(
    settings: Settings,
    codec: Codec,
    topics: list[str],
    spans: InMemorySpanExporter,
    create_spans: bool,
):
    settings = settings.model_copy(update={"tracing_create_spans": create_spans})
    router: Router[None] = Router("everything", CATALOG)
    handled: dict[str, Message[Event]] = {}

    for cls in CATALOG.models:

        @router.on(cls)
        async def record(message: Message[Any], context: None) -> list[Event]:
            handled[message.envelope.event_type] = message
            return []

    sent = [
        Message.first(example, saga_type="order", saga_key=f"ord-{i}", producer="test")
        for i, example in enumerate(EXAMPLES.values())
    ]
    async with EventProducer(settings, codec, client_id="test") as producer:
        with trace.get_tracer("test").start_as_current_span("test publish") as publishing:
            await producer.publish(sent)
        consumer = EventConsumer(
            name="everything",
            group_id=f"{settings.topic_prefix}everything",
            router=router,
            delivery=DirectDelivery(producer, None, "test"),
            codec=codec,
            producer=producer,
            settings=settings,
        )
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(lambda: len(handled) == len(CATALOG), what="one of every type")
        finally:
            await consumer.stop()
            await task
    assert {t: m.event for t, m in handled.items()} == {
        m.envelope.event_type: m.event for m in sent
    }
    finished = spans.get_finished_spans()
    created = {
        s.attributes["messaging.message.id"]: s for s in finished if s.name.endswith("create")
    }
    processed = [s for s in finished if s.name.endswith(" process")]
    assert len(processed) == len(sent)
    assert len(created) == (len(sent) if create_spans else 0)
    for span in processed:
        # A message continues its creator's span: its create span, or the one it was made in.
        parent = created[span.attributes["messaging.message.id"]] if create_spans else publishing
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.attributes["messaging.consumer.group.name"] == consumer.group_id
        assert span.attributes["choreo.order_id"] == span.attributes["messaging.kafka.message.key"]
