"""Cross-cutting concerns of delivery as one chain: log context, tracing, metrics.

As Temporal's workers do (``temporalio/worker/_interceptor.py``), the consumer calls a chain
of :class:`DeliveryInterceptor` objects around each delivery attempt instead of writing
spans, metrics and log context inline. Each interceptor holds the ``next`` one and forwards
every call to it after doing its own part; the end of the chain runs the delivery itself.

- :meth:`~DeliveryInterceptor.deliver` wraps one attempt (one record alone, with its
  in-place retries, or one record's turn inside a batch transaction);
- the other methods are notifications from inside that attempt: the delivery failed, a
  retry was scheduled, the record was deferred (its provider's breaker or bulkhead refused
  it), the record was dead-lettered, or its outcome became durable.

:func:`chain` links interceptor classes (or any ``next → interceptor`` factories) in order,
outermost first; :data:`DEFAULT_INTERCEPTORS` is what every consumer runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import trace

from events import metrics, tracing
from events.dispatch import Pending
from events.dlq import DeadLetter
from events.errors import ProviderDeferred
from events.logs import order_context
from events.spans import RuntimeTracer

T = TypeVar("T")
Lag = Callable[[], Iterable[tuple[str, int, int]]]
"""``lag()`` yields ``(topic, partition, messages behind)`` of a running consumer."""

_tracer = RuntimeTracer("choreo.events")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt of a record, as the interceptors see it.

    Attributes:
        consumer: the consumer group delivering it.
        item: the record, its decoded message and its handler.
        number: 1 for the first attempt; a redelivery from the retry queue counts on.
        batch_size: how many records share the transaction, None when delivered alone.
    """

    consumer: str
    item: Pending
    number: int = 1
    batch_size: int | None = None

    @property
    def event_type(self) -> str:
        return self.item.message.envelope.event_type


class DeliveryInterceptor:
    """One link of the chain; the base forwards everything to ``next``.

    Subclasses override what they need and call the same method on ``self.next``.
    """

    def __init__(self, next: DeliveryInterceptor) -> None:
        self.next = next

    async def deliver(self, attempt: Attempt, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` (the attempt) and return what it returns; may wrap it."""
        return await self.next.deliver(attempt, call)

    def failed(self, attempt: Attempt, error: BaseException, *, final: bool) -> None:
        """The delivery raised ``error``; ``final`` when it will not be retried."""
        self.next.failed(attempt, error, final=final)

    def retry_scheduled(self, attempt: Attempt, number: int, delay_s: float) -> None:
        """Attempt ``number`` failed transiently; the record is tried again in ``delay_s``."""
        self.next.retry_scheduled(attempt, number, delay_s)

    def deferred(self, attempt: Attempt, deferral: ProviderDeferred) -> None:
        """The record waits ``deferral.retry_after_s`` without spending an attempt: its
        provider was not called (breaker open, bulkhead full) or a half-open probe failed."""
        self.next.deferred(attempt, deferral)

    def dead_lettered(self, attempt: Attempt, letter: DeadLetter, attempts: int) -> None:
        """The record went to the dead-letter topic after ``attempts``."""
        self.next.dead_lettered(attempt, letter, attempts)

    def delivered(self, attempt: Attempt, fresh: bool, elapsed_ms: float) -> None:
        """The outcome is durable; ``fresh`` is False for a duplicate."""
        self.next.delivered(attempt, fresh, elapsed_ms)

    def consuming(self, consumer: str, lag: Lag) -> None:
        """The consumer ``consumer`` started; ``lag`` reports how far behind it is."""
        self.next.consuming(consumer, lag)


class _Delivery(DeliveryInterceptor):
    """The end of every chain: runs the attempt; notifications stop here."""

    def __init__(self) -> None:
        pass

    async def deliver(self, attempt: Attempt, call: Callable[[], Awaitable[T]]) -> T:
        return await call()

    def failed(self, attempt: Attempt, error: BaseException, *, final: bool) -> None:
        pass

    def retry_scheduled(self, attempt: Attempt, number: int, delay_s: float) -> None:
        pass

    def deferred(self, attempt: Attempt, deferral: ProviderDeferred) -> None:
        pass

    def dead_lettered(self, attempt: Attempt, letter: DeadLetter, attempts: int) -> None:
        pass

    def delivered(self, attempt: Attempt, fresh: bool, elapsed_ms: float) -> None:
        pass

    def consuming(self, consumer: str, lag: Lag) -> None:
        pass


Interceptor = Callable[[DeliveryInterceptor], DeliveryInterceptor]
"""Builds one link given the next: an interceptor class itself will do."""


def chain(interceptors: Sequence[Interceptor]) -> DeliveryInterceptor:
    """Link ``interceptors``, the first outermost, in front of the delivery itself."""
    head: DeliveryInterceptor = _Delivery()
    for build in reversed(interceptors):
        head = build(head)
    return head


class OrderLogs(DeliveryInterceptor):
    """Logs written during an attempt carry its order id (the record's Kafka key)."""

    async def deliver(self, attempt: Attempt, call: Callable[[], Awaitable[T]]) -> T:
        with order_context(attempt.item.record.key):
            return await self.next.deliver(attempt, call)


def _consumer_attributes(attempt: Attempt) -> dict[str, str | int]:
    """The consumer span's attributes of ``attempt``."""
    record, envelope = attempt.item.record, attempt.item.message.envelope
    attributes: dict[str, str | int] = {
        **tracing.consumer_attributes(
            record.topic,
            record.partition,
            record.offset,
            attempt.consumer,
            envelope.event_type,
            attempt.item.message.saga_key,
        ),
        "messaging.message.id": str(envelope.event_id),
        "choreo.handler": attempt.item.handler.name,
        "choreo.attempt": attempt.number,
    }
    if attempt.batch_size is not None:
        attributes["choreo.batch.size"] = attempt.batch_size
    return attributes


class Tracing(DeliveryInterceptor):
    """The ``"{topic} process"`` consumer span of each attempt, a child of the producer's
    context, with the failures, retries and dead letter recorded on it."""

    async def deliver(self, attempt: Attempt, call: Callable[[], Awaitable[T]]) -> T:
        if not tracing.active():
            return await self.next.deliver(attempt, call)
        record = attempt.item.record
        parent = tracing.extract(record.headers)
        # An order not sampled: the span is its parent's context (events/spans.py), so its
        # attributes are not even built.
        with _tracer.start_as_current_span(
            f"{record.topic} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=None if _tracer.dropped(parent) else _consumer_attributes(attempt),
        ):
            return await self.next.deliver(attempt, call)

    def failed(self, attempt: Attempt, error: BaseException, *, final: bool) -> None:
        span = trace.get_current_span()
        span.record_exception(error)
        if final:
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
        self.next.failed(attempt, error, final=final)

    def retry_scheduled(self, attempt: Attempt, number: int, delay_s: float) -> None:
        trace.get_current_span().add_event(
            "retry_scheduled", {"attempt": number, "delay_s": delay_s}
        )
        self.next.retry_scheduled(attempt, number, delay_s)

    def deferred(self, attempt: Attempt, deferral: ProviderDeferred) -> None:
        trace.get_current_span().add_event(
            "deferred",
            {
                "provider": deferral.provider,
                "reason": deferral.reason,
                "delay_s": deferral.retry_after_s,
            },
        )
        self.next.deferred(attempt, deferral)

    def dead_lettered(self, attempt: Attempt, letter: DeadLetter, attempts: int) -> None:
        trace.get_current_span().add_event(
            "dead_lettered", {"reason": letter.reason[:500], "attempts": attempts}
        )
        self.next.dead_lettered(attempt, letter, attempts)


class Metrics(DeliveryInterceptor):
    """``choreo.events.processed`` by outcome (handled, duplicate, retry, deferred,
    dead_letter), ``choreo.handler.duration`` and the consumer's
    ``choreo.consumer.lag``."""

    def retry_scheduled(self, attempt: Attempt, number: int, delay_s: float) -> None:
        metrics.count_processed(attempt.consumer, attempt.event_type, "retry")
        self.next.retry_scheduled(attempt, number, delay_s)

    def deferred(self, attempt: Attempt, deferral: ProviderDeferred) -> None:
        metrics.count_processed(attempt.consumer, attempt.event_type, "deferred")
        self.next.deferred(attempt, deferral)

    def dead_lettered(self, attempt: Attempt, letter: DeadLetter, attempts: int) -> None:
        metrics.count_processed(attempt.consumer, attempt.event_type, "dead_letter")
        self.next.dead_lettered(attempt, letter, attempts)

    def delivered(self, attempt: Attempt, fresh: bool, elapsed_ms: float) -> None:
        outcome = "handled" if fresh else "duplicate"
        metrics.count_processed(attempt.consumer, attempt.event_type, outcome)
        metrics.handler_duration().record(elapsed_ms, self._labels(attempt))
        self.next.delivered(attempt, fresh, elapsed_ms)

    def consuming(self, consumer: str, lag: Lag) -> None:
        metrics.observe_consumer_lag(consumer, lag)
        self.next.consuming(consumer, lag)

    @staticmethod
    def _labels(attempt: Attempt) -> dict[str, str]:
        return {"consumer": attempt.consumer, "event_type": attempt.event_type}


DEFAULT_INTERCEPTORS: tuple[Interceptor, ...] = (OrderLogs, Tracing, Metrics)
"""Every consumer's chain unless it is given another: log context, span, metrics."""
