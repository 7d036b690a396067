"""How a poll delivered in one batch (events/batches.py) is spread over lanes by key, and how
it falls back when something fails (an in-memory delivery; the real one is tested on
PostgreSQL in tests/integration/test_transactional_delivery.py)."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from contracts.catalog import CATALOG, OrderPlaced
from contracts.samples import sample_order_placed
from events.batches import assign_lanes, lane_of
from events.codec import Codec
from events.consumer import EventConsumer
from events.dlq import DeadLetter, letter_for
from events.model import Event, Message
from events.producer import EventProducer
from events.router import HandlerSpec, Router
from events.settings import get_settings

FAILING = "ord-bad"


class Session:
    def __init__(self, delivery: FakeBatchDelivery) -> None:
        self.delivery = delivery
        self.done: list[str] = []

    async def deliver(self, message: Message[Event], handler: HandlerSpec) -> bool:
        await handler.func(message, None)
        self.done.append(message.saga_key)
        return True


class FakeBatchDelivery:
    """Records what became durable: batches only when they exit cleanly."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at = fail_at  # "begin" or "commit", once
        self.batches: list[list[str]] = []
        self.singles: list[str] = []

    @contextlib.asynccontextmanager
    async def batch(self, consumer: str, messages: Sequence[Message[Event]]) -> AsyncIterator[Any]:
        if self.fail_at == "begin":
            self.fail_at = None
            raise OSError("connection lost at begin")
        session = Session(self)
        yield session
        if self.fail_at == "commit":
            self.fail_at = None
            raise OSError("connection lost at commit")
        self.batches.append(session.done)

    async def deliver(self, consumer: str, message: Message[Event], handler: HandlerSpec) -> bool:
        await handler.func(message, None)
        self.singles.append(message.saga_key)
        return True


def consumer_for(delivery: FakeBatchDelivery, codec: Codec) -> EventConsumer:
    router: Router[None] = Router("test", CATALOG)

    @router.on(OrderPlaced)
    async def handle(message: Message[OrderPlaced], context: None) -> list[Event]:
        if message.saga_key == FAILING:
            raise ValueError("a bad order")  # not retryable: straight to the dead letters
        return []

    settings = get_settings().model_copy(
        update={"consumer_commit_interval_ms": 3_600_000, "consumer_batch_transactions": True}
    )
    consumer = EventConsumer(
        name="test", group_id="test", router=router, delivery=delivery, codec=codec,
        producer=cast(EventProducer, None), settings=settings,  # only dead letters use it
    )  # fmt: skip
    dead: list[str] = []

    async def dead_letter(
        record: ConsumerRecord, error: BaseException, *, attempts: int, **kwargs: Any
    ) -> DeadLetter:
        dead.append(record.key.decode())
        return letter_for(record, error, consumer="test", attempts=attempts)

    consumer.sink.send = dead_letter  # type: ignore[method-assign]
    consumer.dead = dead  # type: ignore[attr-defined]
    return consumer


def poll(codec: Codec, order_ids: list[str]) -> dict[TopicPartition, list[ConsumerRecord]]:
    records = [
        ConsumerRecord(
            topic="t",
            partition=0,
            offset=offset,
            timestamp=0,
            timestamp_type=0,
            key=order_id.encode(),
            checksum=None,
            serialized_key_size=-1,
            serialized_value_size=-1,
            headers=(),
            value=codec.encode(
                Message.first(
                    sample_order_placed(), saga_type="order", saga_key=order_id, producer="test"
                )
            ),
        )
        for offset, order_id in enumerate(order_ids)
    ]
    return {TopicPartition("t", 0): records}


async def test_a_failing_handler_splits_the_batch_around_it(codec: Codec):
    delivery = FakeBatchDelivery()
    consumer = consumer_for(delivery, codec)
    await consumer.process(poll(codec, ["ord-1", "ord-2", FAILING, "ord-4"]))
    # Before it: again as a batch; it alone (dead-lettered); after it: the next batch.
    assert delivery.batches == [["ord-1", "ord-2"], ["ord-4"]]
    assert consumer.stats.batches_rolled_back == 1
    assert consumer.dead == [FAILING]  # type: ignore[attr-defined]
    assert delivery.singles == []  # its handler never completed


@pytest.mark.parametrize("fail_at", ["begin", "commit"])
async def test_a_failure_outside_the_handlers_delivers_every_message_alone(
    codec: Codec, fail_at: str
):
    delivery = FakeBatchDelivery(fail_at)
    consumer = consumer_for(delivery, codec)
    await consumer.process(poll(codec, ["ord-1", "ord-2", "ord-3"]))
    assert delivery.batches == []
    assert delivery.singles == ["ord-1", "ord-2", "ord-3"]
    assert consumer.stats.batches_rolled_back == 1
    assert consumer.stats.processed == 3


def record(
    topic: str, partition: int, offset: int, key: bytes | None, timestamp: int = 0
) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic, partition=partition, offset=offset, timestamp=timestamp, timestamp_type=0,
        key=key, value=b"", checksum=None, serialized_key_size=-1, serialized_value_size=-1,
        headers=(),
    )  # fmt: skip


def test_a_key_has_one_lane_whatever_its_topic_or_partition():
    keys = [f"ord-{i}".encode() for i in range(200)]
    # The same order on different partition numbers in different topics (another producer's
    # partitioner): one lane all the same.
    poll = {
        TopicPartition(topic, partition): [
            record(topic, partition, offset, key) for offset, key in enumerate(keys)
        ]
        for topic, partition in (("a.order", 0), ("a.payment", 2), ("a.email", 1))
    }
    lanes = assign_lanes(poll, 3)
    lane_of_key: dict[bytes | None, set[int]] = {}
    for index, records in enumerate(lanes):
        for r in records:
            lane_of_key.setdefault(r.key, set()).add(index)
    assert all(len(indexes) == 1 for indexes in lane_of_key.values())
    assert len(lane_of_key) == len(keys)
    assert len(lanes) == 3  # 200 keys spread over every lane
    assert lane_of(b"ord-1", 3) == zlib.crc32(b"ord-1") % 3  # stable across processes
    assert lane_of(b"ord-1", 1) == 0


def test_a_lane_keeps_each_keys_records_in_offset_order_and_keyless_records_in_lane_0():
    tp = TopicPartition("a.order", 0)
    keys = [b"ord-1", b"ord-2", None, b"ord-1", b"ord-3", None, b"ord-2", b"ord-1"]
    poll = {tp: [record(tp.topic, 0, offset, key) for offset, key in enumerate(keys)]}
    lanes = assign_lanes(poll, 4)
    assert sorted(r.offset for records in lanes for r in records) == list(range(len(keys)))
    for records in lanes:
        offsets = [r.offset for r in records]
        assert offsets == sorted(offsets)
    keyless = [records for records in lanes if any(r.key is None for r in records)]
    assert len(keyless) == 1
    assert [r.offset for r in keyless[0] if r.key is None] == [2, 5]
    assert lane_of(None, 4) == 0


async def test_offsets_are_reported_per_partition_once_every_lane_finished(codec: Codec):
    delivery = FakeBatchDelivery()
    consumer = consumer_for(delivery, codec)
    assert consumer.batches is not None
    consumer.batches.lanes = 3
    orders = [f"ord-{i}" for i in range(12)]
    offsets = await consumer.batches.deliver(poll(codec, orders))
    assert offsets == {TopicPartition("t", 0): len(orders)}
    assert len(delivery.batches) > 1  # the partition was spread over lanes
    assert sorted(o for batch in delivery.batches for o in batch) == sorted(orders)


def test_a_lane_puts_a_message_after_its_cause_from_another_partition():
    # One poll holds a charge and the shipment failure it caused (another topic, a later
    # timestamp): the failure must not be handled first, whatever order the poll lists them.
    charged = record("a.payment", 1, 3, b"ord-1", timestamp=1_070)
    failed = record("a.shipment", 1, 1, b"ord-1", timestamp=1_082)
    reserved = record("a.inventory", 1, 7, b"ord-1", timestamp=1_021)
    later = record("a.payment", 1, 4, b"ord-1", timestamp=1_000)  # a clock behind: still 4th
    poll = {
        TopicPartition("a.shipment", 1): [failed],
        TopicPartition("a.payment", 1): [charged, later],
        TopicPartition("a.inventory", 1): [reserved],
    }
    [lane] = assign_lanes(poll, 1)
    assert [(r.topic, r.offset) for r in lane] == [
        ("a.inventory", 7), ("a.payment", 3), ("a.payment", 4), ("a.shipment", 1)
    ]  # fmt: skip
