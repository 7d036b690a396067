"""The consumer runtime on the real broker: dispatch, dead letters, retries, commits, ordering."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fastavro import schemaless_writer

from contracts.catalog import CATALOG, OrderPlaced
from contracts.samples import sample_order_placed
from events.codec import MAGIC, Codec
from events.consumer import EventConsumer
from events.delivery import DirectDelivery
from events.dlq import DeadLetter
from events.errors import PermanentError, TransientError
from events.model import Message
from events.producer import EventProducer, OutgoingRecord
from events.router import Router
from events.security import kafka_options
from events.settings import Settings
from events.topics import topic_for
from tests.integration.kafka_helpers import eventually, read_records

pytestmark = pytest.mark.integration

HandlerBody = Callable[[Message[OrderPlaced]], Awaitable[None]]


@asynccontextmanager
async def running_consumer(
    settings: Settings,
    codec: Codec,
    producer: EventProducer,
    body: HandlerBody,
    *,
    group_id: str | None = None,
) -> AsyncIterator[EventConsumer]:
    """A consumer of order.placed whose handler runs ``body``, running in the background."""
    router: Router[None] = Router("test", CATALOG)

    @router.on(OrderPlaced)
    async def on_placed(message: Message[OrderPlaced], context: None) -> list[Any]:
        await body(message)
        return []

    consumer = EventConsumer(
        name="test-consumer",
        group_id=group_id or f"{settings.topic_prefix}group",
        router=router,
        delivery=DirectDelivery(producer, None, "test"),
        codec=codec,
        producer=producer,
        settings=settings,
    )
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        await consumer.stop()
        await task


def _order(order_id: str) -> Message[OrderPlaced]:
    return Message.first(
        sample_order_placed(), saga_type="order", saga_key=order_id, producer="test"
    )


async def test_bad_messages_go_to_the_dlq_and_the_ones_behind_them_are_handled(
    settings: Settings, codec: Codec, producer: EventProducer, registry
):
    topic = topic_for("order.placed", settings)
    # All on one key, hence one partition: the valid orders sit behind the bad ones.
    key = b"ord-shared"
    valid_before = _order("ord-shared")
    garbage = OutgoingRecord(topic, key, b"\x00\x01garbage\xff", ())
    unknown = OutgoingRecord(topic, key, MAGIC + bytes.fromhex("deadbeefdeadbeef") + b"\x02", ())
    invalid_record = valid_before.event.model_dump()
    invalid_record["items"][0]["quantity"] = 0
    invalid_record["envelope"] = valid_before.envelope.model_dump() | {"event_id": uuid.uuid4()}
    latest = registry.latest("order.placed")
    buf = io.BytesIO(MAGIC + latest.fingerprint)
    buf.seek(0, io.SEEK_END)
    schemaless_writer(buf, latest.parsed, invalid_record)
    invalid = OutgoingRecord(topic, key, buf.getvalue(), (("event_type", b"order.placed"),))
    valid_after = [_order("ord-shared") for _ in range(3)]

    await producer.publish([valid_before])
    await producer.send_records([garbage, unknown, invalid])
    await producer.publish(valid_after)

    handled: list[str] = []

    async def record(message: Message[OrderPlaced]) -> None:
        handled.append(str(message.envelope.event_id))

    async with running_consumer(settings, codec, producer, record) as consumer:
        await eventually(lambda: len(handled) == 4, what="the four valid orders")
        await eventually(lambda: consumer.stats.dead_lettered == 3, what="three dead letters")

    assert handled == [str(m.envelope.event_id) for m in [valid_before, *valid_after]]
    letters = [
        DeadLetter.from_json(r.value) for r in await read_records(settings, [settings.dlq_topic], 3)
    ]
    reasons = sorted(letters, key=lambda d: d.source_offset)
    assert [d.source_offset for d in reasons] == [1, 2, 3]
    assert "not Avro single-object encoding" in reasons[0].reason
    assert reasons[0].error_type == "DecodeError"
    assert "unknown writer schema fingerprint deadbeefdeadbeef" in reasons[1].reason
    assert reasons[1].error_type == "UnknownSchemaError"
    assert "items.0.quantity" in reasons[2].reason
    assert reasons[2].error_type == "ValidationError"
    for letter, original in zip(reasons, [garbage, unknown, invalid], strict=True):
        assert letter.original_value == original.value  # byte for byte, for a redrive
        assert letter.source_topic == topic
        assert letter.consumer == f"{settings.topic_prefix}group"
        assert letter.original_key == key


async def test_transient_failures_are_retried_then_handled(
    settings: Settings, codec: Codec, producer: EventProducer
):
    settings = settings.model_copy(update={"handler_backoff_initial_ms": 10})
    attempts: list[int] = []

    async def flaky(message: Message[OrderPlaced]) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise TransientError("provider timed out")

    await producer.publish([_order("ord-flaky")])
    async with running_consumer(settings, codec, producer, flaky) as consumer:
        await eventually(lambda: consumer.stats.processed == 1, what="the retried order")
    assert len(attempts) == 3
    assert consumer.stats.retried == 2
    assert consumer.stats.dead_lettered == 0


async def test_permanent_failure_and_exhausted_retries_are_dead_lettered(
    settings: Settings, codec: Codec, producer: EventProducer
):
    settings = settings.model_copy(
        update={"handler_backoff_initial_ms": 1, "handler_max_attempts": 3}
    )
    seen: list[str] = []

    async def failing(message: Message[OrderPlaced]) -> None:
        seen.append(message.saga_key)
        if message.saga_key == "ord-perm":
            raise PermanentError("card issuer says no")
        raise TransientError("still down")

    await producer.publish([_order("ord-perm"), _order("ord-retry")])
    async with running_consumer(settings, codec, producer, failing) as consumer:
        await eventually(lambda: consumer.stats.dead_lettered == 2, what="two dead letters")
    assert seen.count("ord-perm") == 1  # permanent: never retried
    assert seen.count("ord-retry") == 3  # transient: max_attempts, then the DLQ
    letters = {
        d.event_id: d
        for d in (
            DeadLetter.from_json(r.value)
            for r in await read_records(settings, [settings.dlq_topic], 2)
        )
    }
    by_reason = {d.reason: d for d in letters.values()}
    assert by_reason["card issuer says no"].attempts == 1
    assert by_reason["still down"].attempts == 3
    assert by_reason["still down"].event_type == "order.placed"


async def test_committed_offsets_survive_a_restart(
    settings: Settings, codec: Codec, producer: EventProducer
):
    group = f"{settings.topic_prefix}restart"
    handled: list[str] = []

    async def record(message: Message[OrderPlaced]) -> None:
        handled.append(message.saga_key)

    await producer.publish([_order(f"ord-a{i}") for i in range(5)])
    async with running_consumer(settings, codec, producer, record, group_id=group):
        await eventually(lambda: len(handled) == 5, what="first five")
    await producer.publish([_order(f"ord-b{i}") for i in range(5)])
    async with running_consumer(settings, codec, producer, record, group_id=group):
        await eventually(lambda: len(handled) == 10, what="next five")
        await asyncio.sleep(0.5)  # room for a wrongful redelivery to show up
    assert sorted(handled) == sorted(
        [f"ord-a{i}" for i in range(5)] + [f"ord-b{i}" for i in range(5)]
    )


async def test_messages_of_one_order_are_handled_in_order(
    settings: Settings, codec: Codec, producer: EventProducer
):
    per_order: dict[str, list[int]] = {}
    messages = []
    for seq in range(30):
        order_id = f"ord-{seq % 3}"
        m = Message.first(
            sample_order_placed(skus=(("SKU", seq + 1, 100),)),
            saga_type="order",
            saga_key=order_id,
            producer="t",
        )
        messages.append(m)

    async def record(message: Message[OrderPlaced]) -> None:
        per_order.setdefault(message.saga_key, []).append(message.event.items[0].quantity)
        await asyncio.sleep(0.001)

    await producer.publish(messages)
    async with running_consumer(settings, codec, producer, record):
        await eventually(lambda: sum(map(len, per_order.values())) == 30, what="30 messages")
    for order_id, quantities in per_order.items():
        assert quantities == sorted(quantities), order_id
        assert len(quantities) == 10


async def test_event_topics_are_provisioned_to_keep_everything(
    settings: Settings, topics: list[str]
):
    assert settings.dlq_topic in topics
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {
        t: settings.topic_partitions for t in topics
    }
    retention = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}["retention.ms"]
        for response in configs
        for resource in response.resources
    }
    assert retention == dict.fromkeys(topics, "-1")
