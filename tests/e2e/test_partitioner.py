"""Orders from a producer that partitions keys differently from Choreo.

Choreo's own producer (aiokafka) places a key with Java's murmur2; librdkafka's clients
(confluent-kafka, kcat, ...) default to ``consistent_random``, a CRC32 of the key. Orders
placed and approved through confluent-kafka therefore have their client messages on other
partition numbers than the platform's answers. Neither the runtime's lanes nor the rebuild's
may depend on an order's partition numbers agreeing across topics.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from confluent_kafka import Producer

from choreo.client import PRODUCER, new_order_id
from choreo.roles import as_process
from contracts.catalog import OrderApproved
from contracts.samples import scenario_order
from events.model import Event, Message, utc_now
from events.producer import to_record
from events.topics import event_topics, read_to_end
from projections.queries import Queries
from projections.rebuild import rebuild
from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration

MIX = ["happy", "declined", "unshippable", "out_of_stock", "bounce", "flaky"]


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment({}, "partitioner"):
        yield d


def _produce(checked: Deployment, events: list[tuple[str, Event]]) -> None:
    """Publish ``(order id, event)`` pairs through librdkafka with its default partitioner,
    encoded exactly as Choreo's client encodes them."""
    producer = Producer(
        {"bootstrap.servers": checked.settings.kafka_bootstrap_servers, "acks": "all"}
    )
    for order_id, event in events:
        message: Message[Event] = Message.first(
            event, saga_type="order", saga_key=order_id, producer=PRODUCER, correlation_id=order_id
        )
        record = to_record(message, checked.client.codec, checked.settings)
        producer.produce(record.topic, value=record.value, key=record.key,
                         headers=list(record.headers))  # fmt: skip
    assert producer.flush(30) == 0, "confluent-kafka did not deliver every message"


async def _partition_numbers(checked: Deployment) -> dict[bytes, set[int]]:
    """Every key's partition numbers across the domain topics."""
    numbers: dict[bytes, set[int]] = defaultdict(set)
    async for record in read_to_end(checked.settings, event_topics(checked.settings)):
        if record.key is not None:
            numbers[record.key].add(record.partition)
    return numbers


async def test_orders_from_librdkafka_complete_and_rebuild_verifies(checked: Deployment):
    orders = {new_order_id(): scenario for scenario in MIX * 2}
    large = [new_order_id() for _ in range(2)]
    placed: list[tuple[str, Event]] = [(o, scenario_order(s)) for o, s in orders.items()]
    placed += [(o, scenario_order("large")) for o in large]
    await asyncio.to_thread(_produce, checked, placed)
    checked.orders += [*orders, *large]
    for order_id in large:
        await checked.wait_for(order_id, "awaiting_approval")
    approval = OrderApproved(approved_by="ops-ann", reason="known", approved_at=utc_now())
    await asyncio.to_thread(_produce, checked, [(o, approval) for o in large])
    for order_id in checked.orders:
        await checked.wait_for(order_id)
    for order_id in large:
        assert (await checked.saga(order_id)).status == "completed"

    # The test means something only if some order really spans partition numbers.
    numbers = await _partition_numbers(checked)
    split = [o for o in checked.orders if len(numbers[o.encode()]) > 1]
    assert split, "every order kept one partition number: the partitioners agreed by chance"

    queries = Queries(checked.db, checked.settings)
    for _ in range(300):
        if await queries.ready() and (await queries.projection_status())["total_lag"] == 0:
            break
        await asyncio.sleep(0.2)
    for order_id in checked.orders:
        row = await queries.status(order_id)
        saga = await checked.saga(order_id)
        assert row is not None
        assert (row["status"], row["cancel_reason"]) == (saga.status, saga.cancel_reason)
    one_lane = await rebuild(as_process(checked.settings, "projector"), verify=True, workers=1)
    assert one_lane.differences == []
    lanes = await rebuild(as_process(checked.settings, "projector"), verify=True, workers=3)
    assert lanes.differences == []
    assert (lanes.events, lanes.sagas) == (one_lane.events, one_lane.sagas)
