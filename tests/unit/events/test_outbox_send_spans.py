"""The relay's `outbox <schema> send` span is opt-in (``CHOREO_TRACING_SEND_SPANS``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind

from contracts.samples import sample_order_placed
from events.codec import Codec
from events.database import Database
from events.model import Message
from events.outbox import OutboxRelay
from events.producer import EventProducer, OutgoingRecord, to_record
from events.settings import Settings


class Producer:
    """What the relay hands the producer, kept."""

    def __init__(self) -> None:
        self.sent: list[list[OutgoingRecord]] = []

    async def send_records(self, records: Sequence[OutgoingRecord]) -> None:
        self.sent.append(list(records))


def created_records(codec: Codec, count: int) -> tuple[list[OutgoingRecord], list[SpanContext]]:
    """Records each created in a handler's span of its own order's trace."""
    records, creators = [], []
    for n in range(count):
        message = Message.first(
            sample_order_placed(), saga_type="order", saga_key=f"ord-{n}", producer="test"
        )
        with trace.get_tracer(__name__).start_as_current_span(f"handle {n}") as creator:
            records.append(to_record(message, codec, Settings()))
        creators.append(creator.get_span_context())
    return records, creators


async def publish(
    codec: Codec, spans: InMemorySpanExporter, **options: bool
) -> tuple[list[SpanContext], tuple[ReadableSpan, ...]]:
    """Three records created in spans of their own, sent by a relay with ``options``; their
    creators' contexts and the spans the send made. Sending touches neither the database nor
    more of the producer than ``send_records``."""
    records, creators = created_records(codec, 3)
    spans.clear()
    producer = Producer()
    relay = OutboxRelay(cast(Database, None), "payment", cast(EventProducer, producer), **options)
    await relay._send(records)
    assert producer.sent == [records]
    return creators, spans.get_finished_spans()


async def test_by_default_a_publish_makes_no_span(
    codec: Codec, spans: InMemorySpanExporter
) -> None:
    _, made = await publish(codec, spans)
    assert made == ()


async def test_with_send_spans_a_publish_is_one_span_linked_to_each_message(
    codec: Codec, spans: InMemorySpanExporter
) -> None:
    creators, (send,) = await publish(codec, spans, send_spans=True)
    assert send.name == "outbox payment send"
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is None  # a trace of its own
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 3
    linked = [(link.context.trace_id, link.context.span_id) for link in send.links]
    assert linked == [(c.trace_id, c.span_id) for c in creators]  # read from each one's headers
