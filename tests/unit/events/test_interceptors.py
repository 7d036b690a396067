"""The delivery interceptor chain (events/interceptors.py): order of the links, the consumer
span, its events, and the log context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from contracts.catalog import CATALOG, OrderPlaced
from contracts.samples import sample_order_placed
from events import tracing
from events.dispatch import Pending
from events.dlq import letter_for
from events.interceptors import (
    DEFAULT_INTERCEPTORS,
    Attempt,
    DeliveryInterceptor,
    chain,
)
from events.logs import current_order_id
from events.model import Event, Message
from events.router import Router
from events.spans import RuntimeSpan

T = TypeVar("T")
router: Router[None] = Router("test", CATALOG)


@router.on(OrderPlaced)
async def handle(message: Message[OrderPlaced], context: None) -> list[Event]:
    return []


def attempt(batch_size: int | None = None, headers: tuple[tuple[str, bytes], ...] = ()) -> Attempt:
    message = Message.first(
        sample_order_placed(), saga_type="order", saga_key="ord-7", producer="test"
    )
    record = ConsumerRecord(
        topic="t", partition=2, offset=41, timestamp=0, timestamp_type=0, key=b"ord-7",
        value=b"", checksum=None, serialized_key_size=-1, serialized_value_size=-1,
        headers=headers,
    )  # fmt: skip
    spec = router.get("order.placed")
    assert spec is not None
    return Attempt("group", Pending(record, message, spec), 3, batch_size)


def _fails(*_: object, **__: object) -> None:
    raise AssertionError("a span's attributes built for an unsampled order")


def recorder(name: str, calls: list[str]) -> Callable[[DeliveryInterceptor], DeliveryInterceptor]:
    class Recording(DeliveryInterceptor):
        async def deliver(self, attempt: Attempt, call: Callable[[], Awaitable[T]]) -> T:
            calls.append(f"{name} in")
            try:
                return await self.next.deliver(attempt, call)
            finally:
                calls.append(f"{name} out")

        def delivered(self, attempt: Attempt, fresh: bool, elapsed_ms: float) -> None:
            calls.append(f"{name} delivered")
            self.next.delivered(attempt, fresh, elapsed_ms)

    return Recording


async def test_the_first_interceptor_is_outermost_and_notifications_run_in_order():
    calls: list[str] = []
    head = chain([recorder("a", calls), recorder("b", calls)])

    async def run() -> str:
        calls.append("delivery")
        return "done"

    assert await head.deliver(attempt(), run) == "done"
    head.delivered(attempt(), True, 1.0)
    assert calls == ["a in", "b in", "delivery", "b out", "a out", "a delivered", "b delivered"]


UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


async def test_a_message_of_an_unsampled_order_gets_no_span_and_passes_its_context_on(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
):
    # Not sampled where it started: no span, not even its attributes; what the handler
    # publishes carries the same trace, unsampled.
    monkeypatch.setattr(tracing, "consumer_attributes", _fails)
    head = chain(DEFAULT_INTERCEPTORS)
    carried: list[str | None] = []

    async def run() -> bool:
        carried.append(tracing.traceparent())
        return True

    assert await head.deliver(attempt(headers=(("traceparent", UNSAMPLED.encode()),)), run)
    assert carried == [UNSAMPLED]
    assert not trace.get_current_span().get_span_context().is_valid  # the context left
    assert spans.get_finished_spans() == ()


async def test_the_default_chain_opens_the_consumer_span_and_sets_the_order(
    spans: InMemorySpanExporter,
):
    head = chain(DEFAULT_INTERCEPTORS)
    current = attempt(batch_size=4)
    seen: list[Any] = []

    async def run() -> bool:
        seen.append(current_order_id.get())
        error = TimeoutError("slow")
        head.failed(current, error, final=False)
        head.retry_scheduled(current, 3, 0.25)
        head.failed(current, error, final=True)
        letter = letter_for(current.item.record, error, consumer="group", attempts=4)
        head.dead_lettered(current, letter, 4)
        return True

    assert await head.deliver(current, run)
    assert seen == ["ord-7"]
    assert current_order_id.get() is None
    [span] = [s for s in spans.get_finished_spans() if s.name == "t process"]
    assert isinstance(span, RuntimeSpan)  # the runtime's lighter span, not the SDK's
    assert span.attributes is not None
    assert span.attributes["choreo.attempt"] == 3
    assert span.attributes["choreo.batch.size"] == 4
    assert span.attributes["choreo.order_id"] == "ord-7"
    assert span.attributes["messaging.kafka.offset"] == 41
    assert span.attributes["messaging.consumer.group.name"] == "group"
    assert span.attributes["choreo.handler"] == f"{__name__}.handle"
    assert [e.name for e in span.events] == [
        "exception", "retry_scheduled", "exception", "dead_lettered",
    ]  # fmt: skip
    assert span.status.status_code is StatusCode.ERROR
