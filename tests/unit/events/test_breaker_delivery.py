"""Breakers and bulkheads in the consumer: what is parked, with how many attempts, and what
keeps flowing (an in-memory delivery and retry queue; tests/e2e/test_breakers.py runs the
real platform)."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import ConsumerRecord, TopicPartition

from contracts.catalog import CATALOG, OrderApproved, OrderPlaced
from contracts.samples import sample_order_placed
from events.breakers import BreakerSettings, BreakerState, ProviderGuards
from events.codec import Codec
from events.consumer import EventConsumer
from events.dlq import DeadLetter, letter_for
from events.errors import ProviderUnavailable
from events.model import Event, Message, utc_now
from events.producer import EventProducer
from events.providers import within
from events.router import HandlerSpec, Router
from events.settings import get_settings

CONFIG = BreakerSettings(
    failure_threshold=3, window_s=10, cool_down_s=30, concurrency=1, queue_wait_ms=50
)


@dataclass
class Parked:
    key: str
    attempts: int
    delay_s: float
    error: str


class MemoryRetryQueue:
    def __init__(self) -> None:
        self.parked: list[Parked] = []

    async def park(
        self, consumer: str, record: ConsumerRecord, attempts: int, delay_s: float, error: str
    ) -> None:
        self.parked.append(Parked(record.key.decode(), attempts, delay_s, error))

    async def due(self, consumer: str, limit: int = 100) -> Sequence[Any]:
        return []

    async def done_unless_reparked(self, parked: Any) -> None:
        pass

    async def release(self, parked: Sequence[Any]) -> None:
        pass

    async def until_due(self, consumer: str, longest_s: float, stopping: asyncio.Event) -> None:
        await asyncio.sleep(0.01)


class Session:
    def __init__(self, done: list[str]) -> None:
        self.done = done

    async def deliver(self, message: Message[Event], handler: HandlerSpec) -> bool:
        await handler.func(message, None)
        self.done.append(message.saga_key)
        return True


class MemoryBatchDelivery:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []

    @contextlib.asynccontextmanager
    async def batch(self, consumer: str, messages: Sequence[Message[Event]]) -> AsyncIterator[Any]:
        session = Session([])
        yield session
        self.batches.append(session.done)

    async def deliver(self, consumer: str, message: Message[Event], handler: HandlerSpec) -> bool:
        await handler.func(message, None)
        self.singles.append(message.saga_key)
        return True


@dataclass
class Setup:
    consumer: EventConsumer
    delivery: MemoryBatchDelivery
    queue: MemoryRetryQueue
    guards: ProviderGuards
    dead: list[str]
    calls: list[str]


def setup(codec: Codec, provider_body: Any, *, lanes: int = 1, max_attempts: int = 2) -> Setup:
    """A consumer whose ``order.placed`` handler calls the ``gateway`` (``provider_body``) and
    whose ``order.approved`` handler calls nothing."""
    router: Router[None] = Router("test", CATALOG)
    calls: list[str] = []

    @router.on(OrderPlaced, provider="gateway")
    async def charge(message: Message[OrderPlaced], context: None) -> list[Event]:
        calls.append(message.saga_key)
        await within(provider_body(message.saga_key), 5.0, "the gateway")
        return []

    @router.on(OrderApproved)
    async def note(message: Message[OrderApproved], context: None) -> list[Event]:
        return []

    settings = get_settings().model_copy(
        update={"handler_max_attempts": max_attempts, "consumer_commit_interval_ms": 3_600_000}
    )
    delivery = MemoryBatchDelivery()
    queue = MemoryRetryQueue()
    guards = ProviderGuards(router.providers, lambda name: CONFIG)
    consumer = EventConsumer(
        name="test", group_id="test", router=router, delivery=delivery, codec=codec,
        producer=cast(EventProducer, None), settings=settings, retry_queue=queue,
        lanes=lanes, guards=guards,
    )  # fmt: skip
    dead: list[str] = []

    async def dead_letter(
        record: ConsumerRecord, error: BaseException, *, attempts: int, **kwargs: Any
    ) -> DeadLetter:
        dead.append(record.key.decode())
        return letter_for(record, error, consumer="test", attempts=attempts)

    consumer.sink.send = dead_letter  # type: ignore[method-assign]
    return Setup(consumer, delivery, queue, guards, dead, calls)


def poll(codec: Codec, messages: list[tuple[str, str]]) -> dict[TopicPartition, list[Any]]:
    """``(order id, "placed" | "approved")`` records on one partition, in that order."""
    records = []
    for offset, (order_id, kind) in enumerate(messages):
        event: Event = (
            sample_order_placed()
            if kind == "placed"
            else OrderApproved(approved_by="policy:auto", approved_at=utc_now())
        )
        value = codec.encode(
            Message.first(event, saga_type="order", saga_key=order_id, producer="test")
        )
        record = ConsumerRecord(
            topic="t", partition=0, offset=offset, timestamp=0, timestamp_type=0,
            key=order_id.encode(), value=value, checksum=None, serialized_key_size=-1,
            serialized_value_size=-1, headers=(),
        )  # fmt: skip
        records.append(record)
    return {TopicPartition("t", 0): records}


async def down(order_id: str) -> None:
    raise ProviderUnavailable("gateway unavailable")


async def test_an_outage_opens_the_breaker_and_parks_messages_without_spending_attempts(
    codec: Codec,
):
    s = setup(codec, down, max_attempts=2)
    orders = [(f"ord-{i}", "placed") for i in range(6)]
    await s.consumer.process(poll(codec, orders))
    assert s.guards["gateway"].breaker.state is BreakerState.OPEN
    parked = {p.key: p for p in s.queue.parked}
    assert sorted(parked) == [f"ord-{i}" for i in range(6)]
    # The first two failed while it was closed: one attempt spent each. The third opened
    # it and, like the rest, waits for the cool-down without spending one.
    assert [parked[f"ord-{i}"].attempts for i in range(6)] == [1, 1, 0, 0, 0, 0]
    assert all(parked[f"ord-{i}"].delay_s >= 30 for i in range(2, 6))
    assert "ProviderDeferred: provider gateway circuit open" in parked["ord-5"].error
    # Messages after the one that opened it were parked before any transaction: the gateway
    # was called for the first three only (a batch try and a single try each).
    assert s.calls == ["ord-0", "ord-0", "ord-1", "ord-1", "ord-2"]
    assert s.consumer.stats.deferred == 4
    assert s.dead == []

    # Redelivered from the retry queue while still open: parked again, still attempt 2.
    s.queue.parked.clear()
    [record] = poll(codec, [("ord-0", "placed")])[TopicPartition("t", 0)]
    assert await s.consumer._process_record(record, attempt=2) is False
    [again] = s.queue.parked
    assert (again.key, again.attempts) == ("ord-0", 1)
    assert s.dead == []


async def test_an_open_breaker_parks_its_messages_before_the_batch_and_the_rest_flows(
    codec: Codec,
):
    s = setup(codec, down)
    await s.consumer.process(poll(codec, [(f"ord-{i}", "placed") for i in range(3)]))
    assert s.guards["gateway"].breaker.state is BreakerState.OPEN
    s.queue.parked.clear()
    s.calls.clear()
    s.delivery.batches.clear()
    rolled_back = s.consumer.stats.batches_rolled_back
    mixed = [("ord-a", "placed"), ("ord-b", "approved"), ("ord-c", "placed"), ("ord-d", "approved")]
    await s.consumer.process(poll(codec, mixed))
    assert [p.key for p in s.queue.parked] == ["ord-a", "ord-c"]
    assert [p.attempts for p in s.queue.parked] == [0, 0]
    assert s.delivery.batches == [["ord-b", "ord-d"]]
    assert s.consumer.stats.batches_rolled_back == rolled_back  # no batch was tried and lost
    assert s.calls == []


def keys_in_lanes(lanes: int) -> list[str]:
    """One order id per lane, lane 0 first."""
    found: dict[int, str] = {}
    for i in range(100):
        key = f"ord-{i}"
        found.setdefault(zlib.crc32(key.encode()) % lanes, key)
    return [found[lane] for lane in range(lanes)]


async def test_a_slow_provider_holds_one_lane_and_the_others_keep_flowing(codec: Codec):
    release = asyncio.Event()
    slow, busy, other = keys_in_lanes(3)

    async def answer(order_id: str) -> None:
        if order_id == slow:
            await release.wait()

    s = setup(codec, answer, lanes=3)
    work = asyncio.create_task(
        s.consumer.process(poll(codec, [(slow, "placed"), (busy, "placed"), (other, "approved")]))
    )
    for _ in range(100):
        if s.queue.parked and [other] in s.delivery.batches:
            break
        await asyncio.sleep(0.01)
    # The gateway's one slot is taken by the slow call: the second gateway message waits in
    # the retry queue (no attempt spent), the other handler's message went through.
    assert [(p.key, p.attempts) for p in s.queue.parked] == [(busy, 0)]
    assert "busy" in s.queue.parked[0].error
    assert [other] in s.delivery.batches
    assert not work.done()
    release.set()
    await work
    assert [slow] in s.delivery.batches
    assert s.guards["gateway"].bulkhead.in_use == 0
    assert s.guards["gateway"].breaker.state is BreakerState.CLOSED
    assert s.dead == []
