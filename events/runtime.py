"""The consumer runtime every Choreo process runs: consume, decode, dispatch, deliver, commit.

A process declares its handlers on a :class:`Router` and hands it to an :class:`EventConsumer`
together with a :class:`Delivery`, which decides how a handler's outcome becomes durable (sent
to Kafka and acknowledged, or written in one PostgreSQL transaction with the dedupe mark).
The consumer commits a partition's offset only after every record before it was delivered or
dead-lettered, so nothing is lost; the records of one partition (one order's messages) are
processed in order. A delivery that can (:class:`BatchDelivery`) takes a whole poll in one
transaction per lane (see :meth:`EventConsumer._process_poll`); any other gets one record at a
time, partitions concurrently.

A record that cannot be decoded, breaks the contract, or fails permanently goes to the
dead-letter topic with the reason; the loop moves on to the records behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

import pydantic
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry import trace

from events import metrics, tracing
from events.catalog import EVENT_TYPES
from events.codec import Codec
from events.dlq import DeadLetter, letter_for
from events.errors import ChoreoError, ContractError
from events.headers import EVENT_TYPE, header
from events.logs import current_order_id
from events.model import Event, Message
from events.producer import EventProducer
from events.settings import Settings
from events.topics import topic_for

log = logging.getLogger("choreo.runtime")
_tracer = trace.get_tracer("choreo.events")

C = TypeVar("C")
E = TypeVar("E", bound=Event)

HandlerResult = Iterable[Event] | None
HandlerFunc = Callable[[Message[Any], Any], Awaitable[HandlerResult]]
R = TypeVar("R", bound=Iterable[Event] | None)
GiveUpFunc = Callable[[Message[Any], BaseException, Any], Awaitable[HandlerResult]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One registered handler: which event type it takes and the function.

    ``on_give_up``, if set, runs (through the same delivery, so atomically and deduplicated)
    after the message was dead-lettered, and returns events that record the failure, e.g.
    ``email.failed``.
    """

    event_type: str
    model: type[Event]
    func: HandlerFunc
    on_give_up: GiveUpFunc | None = None

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


class Router(Generic[C]):
    """Maps event types to handlers. Registration is checked at import time.

    A handler is ``async def h(message: Message[SomeEvent], context: C) -> list[Event]``: it
    returns the events and commands to emit and never touches Kafka. ``C`` is whatever the
    process's :class:`Delivery` hands in (a service's state store, bound to the transaction).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[str, HandlerSpec] = {}

    def on(
        self,
        model: type[E],
        *,
        on_give_up: Callable[[Message[E], BaseException, C], Awaitable[HandlerResult]]
        | None = None,
    ) -> Callable[
        [Callable[[Message[E], C], Awaitable[R]]],
        Callable[[Message[E], C], Awaitable[R]],
    ]:
        """Register the decorated function as the handler of ``model``'s event type."""
        if EVENT_TYPES.get(getattr(model, "event_type", "")) is not model:
            raise TypeError(f"{model!r} is not an event type of the catalog")

        def register(
            func: Callable[[Message[E], C], Awaitable[R]],
        ) -> Callable[[Message[E], C], Awaitable[R]]:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(f"handler {func.__qualname__} must be an async function")
            params = [
                p
                for p in inspect.signature(func).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(params) != 2:
                raise TypeError(
                    f"handler {func.__qualname__} must take (message, context), "
                    f"it takes {len(params)} positional parameters"
                )
            if model.event_type in self._handlers:
                other = self._handlers[model.event_type].name
                raise TypeError(f"{model.event_type} already has a handler in {self.name}: {other}")
            self._handlers[model.event_type] = HandlerSpec(
                model.event_type,
                model,
                cast(HandlerFunc, func),
                cast(GiveUpFunc | None, on_give_up),
            )
            return func

        return register

    def get(self, event_type: str) -> HandlerSpec | None:
        return self._handlers.get(event_type)

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    def topics(self, settings: Settings) -> list[str]:
        """The topics holding this router's event types."""
        return sorted({topic_for(t, settings) for t in self._handlers})


class Delivery(Protocol):
    """Runs one handler and makes its outcome durable before the offset may be committed."""

    async def deliver(
        self, consumer: str, message: Message[Event], handler: HandlerSpec
    ) -> bool | None:
        """Return False if the message was a duplicate (already processed, nothing done).

        Raise to signal failure; a retryable :class:`ChoreoError` (or any non-Choreo error)
        is retried with backoff, anything else goes to the dead-letter topic."""


class BatchSession(Protocol):
    """One open transaction of a :class:`BatchDelivery`, delivering messages in turn."""

    async def deliver(self, message: Message[Event], handler: HandlerSpec) -> bool:
        """Like :meth:`Delivery.deliver`, inside the batch's transaction; raising aborts it."""
        ...


class BatchDelivery(Delivery, Protocol):
    """A delivery that can also make a whole poll's outcomes durable in one transaction.

    ``batch(consumer, messages)`` opens it for ``messages`` (all of which will be delivered
    in that order through the session); the outcomes become durable together when the
    context exits without an exception, and none does when it raises.
    """

    def batch(
        self, consumer: str, messages: Sequence[Message[Event]]
    ) -> contextlib.AbstractAsyncContextManager[BatchSession]: ...


def caused_messages(
    message: Message[Event], outputs: HandlerResult, producer_name: str
) -> list[Message[Event]]:
    """Wrap a handler's returned events in envelopes caused by ``message``."""
    return [message.caused(event, producer=producer_name) for event in outputs or ()]


class DirectDelivery(Generic[C]):
    """Call the handler and publish what it returns, waiting for the broker's acknowledgement.

    At-least-once: a crash between publish and commit republishes; consumers downstream dedupe
    by event id. Processes whose handlers change state use a transactional delivery instead.
    """

    def __init__(self, producer: EventProducer, context: C, producer_name: str) -> None:
        self.producer = producer
        self.context = context
        self.producer_name = producer_name

    async def deliver(
        self, consumer: str, message: Message[Event], handler: HandlerSpec
    ) -> bool | None:
        outputs = await handler.func(message, self.context)
        await self.producer.publish(caused_messages(message, outputs, self.producer_name))
        return True


class RetryQueue(Protocol):
    """Where records whose handler failed transiently wait for their next attempt."""

    async def park(
        self, consumer: str, record: ConsumerRecord, attempts: int, delay_s: float, error: str
    ) -> None: ...

    async def due(self, consumer: str, limit: int = 100) -> Sequence[Any]: ...

    async def done_unless_reparked(self, parked: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Pending:
    """A decoded record with its handler, ready to be delivered."""

    record: ConsumerRecord
    message: Message[Event]
    handler: HandlerSpec


class OffsetCommits:
    """Offsets waiting to be committed to Kafka, committed at most every ``interval_ms``.

    Committing every small batch cost the broker and every consumer a round trip per poll;
    committing a little later only widens what a crash redelivers, which the deliveries'
    dedupe (or the projector's checkpoints) absorbs.
    """

    def __init__(self, name: str, interval_ms: int, *, failure_level: int = logging.WARNING):
        self.name = name
        self.interval_ms = interval_ms
        self.failure_level = failure_level
        self._pending: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()

    def add(self, offsets: dict[TopicPartition, int]) -> None:
        self._pending.update(offsets)

    async def flush(self, consumer: AIOKafkaConsumer | None, *, force: bool = False) -> None:
        """Commit what is pending if the interval has passed (or ``force``)."""
        elapsed_ms = (time.monotonic() - self._committed_at) * 1000
        if not self._pending or (not force and elapsed_ms < self.interval_ms):
            return
        assert consumer is not None, "offsets are pending, so the consumer has started"
        offsets, self._pending = self._pending, {}
        self._committed_at = time.monotonic()
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partition moved to another member; it re-reads from the last commit.
            log.log(self.failure_level, "%s could not commit %s: %s", self.name, offsets, exc)


@dataclass
class ConsumerStats:
    """Counters of one consumer since it started."""

    processed: int = 0
    skipped: int = 0
    retried: int = 0
    dead_lettered: int = 0
    batches_rolled_back: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class EventConsumer:
    """Consumes a router's topics in a consumer group and delivers each message once or DLQs it.

    Lifecycle: ``await start()``, ``await run()`` (until :meth:`stop`), ``await stop()``
    (idempotent; finishes the batch in hand and commits it first). Also an async context
    manager that starts and stops.

    With a delivery that has ``batch`` (and ``consumer_batch_transactions`` on), each poll is
    delivered in ``lanes`` concurrent transactions (see :meth:`_process_poll`); more than one
    lane suits handlers that touch only their own order's rows, since transactions of
    different orders then never wait on each other.
    """

    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        router: Router[Any],
        delivery: Delivery,
        codec: Codec,
        producer: EventProducer,
        settings: Settings,
        topics: Sequence[str] | None = None,
        retry_queue: RetryQueue | None = None,
        retry_poll_interval_s: float = 0.1,
        lanes: int = 1,
    ) -> None:
        self.name = name
        self.lanes = max(1, lanes)
        self.retry_queue = retry_queue
        self.retry_poll_interval_s = retry_poll_interval_s
        self.group_id = group_id
        self.router = router
        self.delivery = delivery
        self.codec = codec
        self.producer = producer
        self.settings = settings
        self.topics = list(topics) if topics is not None else router.topics(settings)
        self.stats = ConsumerStats()
        self._next_offsets: dict[TopicPartition, int] = {}
        self._commits = OffsetCommits(name, settings.consumer_commit_interval_ms)
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._running = False
        self._loop_done = asyncio.Event()
        self._batching: BatchDelivery | None = (
            cast(BatchDelivery, delivery)
            if settings.consumer_batch_transactions and hasattr(delivery, "batch")
            else None
        )

    async def start(self) -> None:
        if self._consumer is not None:
            return
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group_id,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.settings.consumer_batch_size,
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=max(300, self.settings.consumer_session_timeout_ms // 4),
        )
        await self._consumer.start()
        metrics.observe_consumer_lag(self.group_id, self._lag)
        log.info("%s consuming %s as group %s", self.name, ", ".join(self.topics), self.group_id)

    async def __aenter__(self) -> EventConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Poll, process and commit until :meth:`stop` is called."""
        await self.start()
        consumer = self._consumer
        assert consumer is not None
        self._running = True
        self._loop_done.clear()
        retries = (
            asyncio.create_task(self._retry_loop(), name=f"{self.name}:retries")
            if self.retry_queue is not None
            else None
        )
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(
                    timeout_ms=self.settings.consumer_poll_timeout_ms,
                    max_records=self.settings.consumer_batch_size,
                )
                await self._commits.flush(self._consumer)
                if not batch:
                    continue
                if self._batching is not None:
                    await self._process_poll(self._batching, batch)
                else:
                    await asyncio.gather(
                        *(self._process_partition(tp, records) for tp, records in batch.items())
                    )
        finally:
            if retries is not None:
                self._stopping.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await retries
            await self._commits.flush(self._consumer, force=True)
            self._running = False
            self._loop_done.set()

    async def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group. Safe to call twice."""
        self._stopping.set()
        if self._running:
            await self._loop_done.wait()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
            log.info("%s stopped: %s", self.name, self.stats)

    async def _process_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        for record in records:
            with _order_of(record):
                await self._process_record(record)
        await self._commit({tp: records[-1].offset + 1})

    async def _process_poll(
        self, delivery: BatchDelivery, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Deliver a poll in transactions of ``delivery``, one per lane, then commit every
        offset.

        A lane is the partitions of one partition number across the topics; an order's
        messages share a key, hence a partition number, so lanes never share an order and
        run concurrently (``lanes`` > 1) without reordering anything.
        """
        lanes: dict[int, list[Pending]] = {}
        for tp, records in batch.items():
            lane = lanes.setdefault(tp.partition % self.lanes, [])
            for record in records:
                with _order_of(record):
                    item = await self._prepare(record, attempt=1)
                if item is not None:
                    lane.append(item)
        await asyncio.gather(*(self._deliver_lane(delivery, items) for items in lanes.values()))
        await self._commit({tp: records[-1].offset + 1 for tp, records in batch.items()})

    async def _deliver_lane(self, delivery: BatchDelivery, pending: list[Pending]) -> None:
        """Deliver ``pending`` (each partition's records in offset order) in one transaction.

        When a handler raises, the transaction rolls back: the records before it are
        delivered again as a batch, the failing one alone through the retrying path (park,
        dead-letter, give-up), and the ones after it as the next batch. Handlers are
        idempotent towards the outside world (business keys), as a crash before commit
        already requires.
        """
        while pending:
            failed = await self._deliver_batch(delivery, pending)
            if failed is None:
                break
            if failed == len(pending):  # failed outside any handler (e.g. at commit)
                for item in pending:
                    await self._deliver_one(item)
                break
            head, culprit, pending = pending[:failed], pending[failed], pending[failed + 1 :]
            if head and await self._deliver_batch(delivery, head) is not None:
                for item in head:
                    await self._deliver_one(item)
            await self._deliver_one(culprit)

    async def _deliver_batch(self, delivery: BatchDelivery, items: list[Pending]) -> int | None:
        """Deliver ``items`` in one transaction. Returns None when it committed, else the index
        of the item whose handler raised (``len(items)`` if the failure was elsewhere)."""
        started = time.perf_counter()
        outcomes: list[bool] = []
        in_handler = False
        try:
            async with delivery.batch(self.group_id, [i.message for i in items]) as session:
                for item in items:
                    with _order_of(item.record), self._process_span(item, 1) as span:
                        span.set_attribute("choreo.batch.size", len(items))
                        in_handler = True
                        outcomes.append(await session.deliver(item.message, item.handler))
                        in_handler = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Outside a handler (begin, inbox, staging, commit) no one item is to blame.
            failed = len(outcomes) if in_handler else len(items)
            self.stats.batches_rolled_back += 1
            log.info(
                "%s: batch of %d rolled back at %s: %s: %s",
                self.name,
                len(items),
                f"item {failed}" if in_handler else "the transaction",
                type(exc).__name__,
                exc,
            )
            return failed
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(items)
        for item, fresh in zip(items, outcomes, strict=True):
            self._count_delivered(item.message, fresh, elapsed_ms)
        return None

    async def _deliver_one(self, item: Pending, attempt: int = 1) -> bool:
        """Deliver one record in its own transaction, retrying; False if it was parked."""
        with _order_of(item.record), self._process_span(item, attempt) as span:
            return await self._deliver_with_retries(
                item.record, item.message, item.handler, span, attempt
            )

    def _lag(self) -> list[tuple[str, int, int]]:
        consumer = self._consumer
        if consumer is None:
            return []
        lags = []
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None and tp in self._next_offsets:
                lags.append((tp.topic, tp.partition, max(0, highwater - self._next_offsets[tp])))
        return lags

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Record that everything before ``offsets`` is delivered; committed to Kafka at most
        every ``consumer_commit_interval_ms`` (and when the loop ends)."""
        self._next_offsets.update(offsets)
        self._commits.add(offsets)
        await self._commits.flush(self._consumer)

    async def _process_record(self, record: ConsumerRecord, attempt: int = 1) -> bool:
        """Decode, dispatch and deliver one record; returns False if it was parked for a retry."""
        item = await self._prepare(record, attempt)
        return True if item is None else await self._deliver_one(item, attempt)

    async def _prepare(self, record: ConsumerRecord, attempt: int) -> Pending | None:
        """Decode and route a record; None when it is not for this consumer or was
        dead-lettered as undecodable."""
        declared_type = header(record.headers, EVENT_TYPE)
        if declared_type is not None and self.router.get(declared_type) is None:
            self.stats.skipped += 1
            return None
        try:
            message = self.codec.decode(record.value)
        except ContractError as exc:
            await self._dead_letter(record, exc, attempts=attempt, event_type=declared_type)
            return None
        handler = self.router.get(message.envelope.event_type)
        if handler is None:
            self.stats.skipped += 1
            return None
        return Pending(record, message, handler)

    def _process_span(self, item: Pending, attempt: int) -> contextlib.AbstractContextManager[Any]:
        """The consumer span of one delivery attempt, a child of the producer's context."""
        record, envelope = item.record, item.message.envelope
        return _tracer.start_as_current_span(
            f"{record.topic} process",
            context=tracing.extract(record.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                **tracing.consumer_attributes(
                    record.topic,
                    record.partition,
                    record.offset,
                    self.group_id,
                    envelope.event_type,
                    item.message.order_id,
                ),
                "messaging.message.id": str(envelope.event_id),
                "choreo.handler": item.handler.name,
                "choreo.attempt": attempt,
            },
        )

    async def _deliver_with_retries(
        self,
        record: ConsumerRecord,
        message: Message[Event],
        handler: HandlerSpec,
        span: trace.Span,
        attempt: int,
    ) -> bool:
        """Deliver; on a transient failure park the record (non-blocking) or, without a retry
        queue, back off in place. Returns False if the record was parked."""
        started = time.perf_counter()
        labels = {"consumer": self.group_id, "event_type": message.envelope.event_type}
        while True:
            try:
                fresh = await self.delivery.deliver(self.group_id, message, handler)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                span.record_exception(exc)
                max_attempts = getattr(exc, "max_attempts", self.settings.handler_max_attempts)
                if not is_retryable(exc) or attempt >= max_attempts:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                    await self._dead_letter(
                        record,
                        exc,
                        attempts=attempt,
                        event_type=message.envelope.event_type,
                        event_id=str(message.envelope.event_id),
                    )
                    await self._give_up(message, handler, exc)
                    metrics.events_processed().add(1, {**labels, "outcome": "dead_letter"})
                    return True
                delay = self._backoff(attempt)
                log.warning(
                    "%s: %s for %s of order %s failed (attempt %d/%d), retry in %.2fs: %s",
                    self.name,
                    handler.name,
                    message.envelope.event_type,
                    message.order_id,
                    attempt,
                    max_attempts,
                    delay,
                    exc,
                )
                span.add_event("retry_scheduled", {"attempt": attempt, "delay_s": delay})
                self.stats.retried += 1
                metrics.events_processed().add(1, {**labels, "outcome": "retry"})
                if self.retry_queue is not None:
                    await self.retry_queue.park(
                        self.group_id, record, attempt, delay, f"{type(exc).__name__}: {exc}"
                    )
                    return False
                attempt += 1
                await asyncio.sleep(delay)
            else:
                self._count_delivered(
                    message, fresh is not False, (time.perf_counter() - started) * 1000
                )
                return True

    def _count_delivered(self, message: Message[Event], fresh: bool, elapsed_ms: float) -> None:
        event_type = message.envelope.event_type
        self.stats.processed += 1
        self.stats.by_type[event_type] = self.stats.by_type.get(event_type, 0) + 1
        labels = {"consumer": self.group_id, "event_type": event_type}
        outcome = "handled" if fresh else "duplicate"
        metrics.events_processed().add(1, {**labels, "outcome": outcome})
        metrics.handler_duration().record(elapsed_ms, labels)

    async def _retry_loop(self) -> None:
        """Redeliver parked records when they are due, until the consumer stops."""
        queue = self.retry_queue
        assert queue is not None
        while not self._stopping.is_set():
            try:
                for parked in await queue.due(self.group_id):
                    if self._stopping.is_set():
                        break
                    await self._process_record(parked.record, attempt=parked.attempts + 1)
                    # Parked again (a newer row replaced it) or finished: either way this
                    # attempt is over; a finished record leaves the queue.
                    await queue.done_unless_reparked(parked)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: retry loop failed; trying again", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.retry_poll_interval_s)

    async def _give_up(
        self, message: Message[Event], handler: HandlerSpec, error: BaseException
    ) -> None:
        """Run the handler's give-up hook, if any, so the failure itself becomes an event."""
        hook = handler.on_give_up
        if hook is None:
            return

        async def record_failure(msg: Message[Any], context: Any) -> HandlerResult:
            return await hook(msg, error, context)

        spec = HandlerSpec(handler.event_type, handler.model, record_failure)
        try:
            await self.delivery.deliver(f"{self.group_id}:gave-up", message, spec)
        except Exception:
            log.exception("%s: give-up hook of %s failed", self.name, handler.name)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped."""
        ceiling = min(
            self.settings.handler_backoff_max_ms,
            self.settings.handler_backoff_initial_ms * 2 ** (attempt - 1),
        )
        return random.uniform(ceiling / 2, ceiling) / 1000

    async def _dead_letter(
        self,
        record: ConsumerRecord,
        error: BaseException,
        *,
        attempts: int,
        event_type: str | None = None,
        event_id: str | None = None,
    ) -> None:
        letter: DeadLetter = letter_for(
            record,
            error,
            consumer=self.group_id,
            attempts=attempts,
            event_type=event_type,
            event_id=event_id,
        )
        log.error(
            "%s: %s@%d/%d dead-lettered after %d attempt(s): %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            letter.reason,
        )
        trace.get_current_span().add_event(
            "dead_lettered", {"reason": letter.reason[:500], "attempts": attempts}
        )
        await self.producer.send_records([letter.to_record(self.settings.dlq_topic)])
        self.stats.dead_lettered += 1
        metrics.dead_letters().add(1, {"consumer": self.group_id, "error_type": letter.error_type})


@contextlib.contextmanager
def _order_of(record: ConsumerRecord) -> Iterator[None]:
    """Logs written while handling ``record`` carry its order id (the Kafka key)."""
    token = current_order_id.set((record.key or b"").decode(errors="replace") or None)
    try:
        yield
    finally:
        current_order_id.reset(token)


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying may help: Choreo errors say so; invalid data and programming errors
    (pydantic validation, type and attribute errors) never pass on retry."""
    if isinstance(exc, ChoreoError):
        return exc.retryable
    return not isinstance(exc, pydantic.ValidationError | TypeError | AttributeError | KeyError)


async def run_until_stopped(*consumers: EventConsumer, stop: asyncio.Event) -> None:
    """Run consumers until ``stop`` is set (e.g. by SIGTERM), then stop them gracefully."""
    tasks = [asyncio.create_task(c.run(), name=c.name) for c in consumers]
    waiter = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise cast(BaseException, task.exception())
    finally:
        waiter.cancel()
        for consumer in consumers:
            await consumer.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
