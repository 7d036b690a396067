"""Publishing: turn messages into Kafka records and send them idempotently with ``acks=all``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from aiokafka import AIOKafkaProducer
from opentelemetry import trace

from events import tracing
from events.codec import Codec
from events.headers import envelope_headers
from events.model import Event, Message
from events.security import kafka_options
from events.settings import Settings
from events.spans import RuntimeTracer
from events.stopping import close_within
from events.topics import topic_for

_tracer = RuntimeTracer("choreo.events")


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A Kafka record ready to send: what an outbox row or a direct publish holds."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_type: str = ""


def to_record(message: Message[Event], codec: Codec, settings: Settings) -> OutgoingRecord:
    """Encode ``message`` for its domain topic, keyed by order id, with trace context.

    Called where the message is created, so the trace context is the creator's span: the
    handler's, or a ``<topic> create`` span of its own with ``tracing_create_spans`` and for
    a message created outside any span (it starts a trace).
    """
    topic = topic_for(message.envelope.event_type, settings)
    if not tracing.active() or (
        not settings.tracing_create_spans and trace.get_current_span().get_span_context().is_valid
    ):
        return _record(topic, message, envelope_headers(message.envelope), codec)
    with _tracer.start_as_current_span(
        f"{topic} create",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "create",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": message.envelope.saga_key,
            "messaging.message.id": str(message.envelope.event_id),
            "choreo.event_type": message.envelope.event_type,
            "choreo.order_id": message.envelope.saga_key,
        },
    ):
        headers = envelope_headers(message.envelope)
    return _record(topic, message, headers, codec)


def _record(
    topic: str, message: Message[Event], headers: Sequence[tuple[str, bytes]], codec: Codec
) -> OutgoingRecord:
    return OutgoingRecord(
        topic=topic,
        key=message.envelope.saga_key.encode(),
        value=codec.encode(message),
        headers=tuple(headers),
        event_type=message.envelope.event_type,
    )


class EventProducer:
    """An idempotent Kafka producer (acks=all) for Choreo messages and raw records."""

    def __init__(self, settings: Settings, codec: Codec, *, client_id: str = "choreo") -> None:
        self.settings = settings
        self.codec = codec
        self.client_id = client_id
        self._producer = self._client()
        self._started = False
        self._failed = False

    def _client(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **kafka_options(self.settings),
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.settings.producer_linger_ms,
            max_batch_size=256 * 1024,
        )

    async def start(self) -> None:
        """Connect; a failed start may be tried again (the API's first request that publishes
        starts it, and the next one retries)."""
        if self._started:
            return
        if self._failed:  # closed: a closed client cannot start again
            self._producer, self._failed = self._client(), False
        try:
            await self._producer.start()
        except BaseException:
            # Closed, or aiokafka warns "Unclosed AIOKafkaProducer" when it is collected.
            await self._producer.stop()
            self._failed = True
            raise
        self._started = True

    async def stop(self) -> None:
        """Flush and close; safe to call twice, and on a producer that never started (a
        replay's runtime publishes nothing)."""
        self._started = False
        await close_within(
            self._producer.stop(),  # idempotent; closes an unstarted client too
            f"producer {self.client_id}",
            "no one was told the unacknowledged were sent; a service's stay in its outbox",
        )

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def publish(self, messages: Sequence[Message[Event]]) -> None:
        """Encode and send ``messages``; returns once the broker has acknowledged all."""
        await self.send_records([to_record(m, self.codec, self.settings) for m in messages])

    async def send_records(self, records: Sequence[OutgoingRecord]) -> None:
        """Send already-encoded records, batched, and wait for every acknowledgement."""
        futures = [
            await self._producer.send(r.topic, value=r.value, key=r.key, headers=list(r.headers))
            for r in records
        ]
        if futures:
            await asyncio.gather(*futures)


async def publish_first(
    producer: EventProducer,
    event: Event,
    *,
    saga_type: str,
    saga_key: str,
    by: str,
    trace_parent: str | None = None,
) -> Message[Event]:
    """Publish ``event`` from outside the platform: a flow's first message or a person's answer
    (the CLI, the API), under a ``<event type> publish`` span.

    Args:
        producer: A started producer.
        event: What to publish.
        saga_type: The saga type it starts or answers (e.g. ``order``).
        saga_key: Its saga's key (the Kafka key) and correlation id.
        by: The envelope's ``producer`` (``cli``, ``api``).
        trace_parent: The ``traceparent`` of the order's first message, to join the order's
            trace; None starts a new trace (placing an order).
    """
    message: Message[Event] = Message.first(
        event, saga_type=saga_type, saga_key=saga_key, producer=by, correlation_id=saga_key
    )
    with _tracer.start_as_current_span(
        f"{event.event_type} publish",
        context=tracing.extract_traceparent(trace_parent),
        kind=trace.SpanKind.PRODUCER,
        attributes={"choreo.order_id": saga_key, "choreo.event_type": event.event_type},
    ):
        await producer.publish([message])
    return message
