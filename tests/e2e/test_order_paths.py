"""Every path of the order saga on the real stack, with all processes running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer

from events.headers import header
from events.producer import OutgoingRecord
from events.security import kafka_options
from events.topics import event_topics, partitions_of, read_to_end
from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment({}, "paths"):
        yield d


async def test_happy_path_completes(checked: Deployment):
    order_id = await checked.place("happy")
    state = await checked.wait_for(order_id)
    assert state.status == "completed"
    assert state.approved_by == "policy:auto"
    assert state.payment_id is not None
    assert state.shipment_id is not None
    assert state.crm_updated_at is not None
    assert state.email_outcome == "sent"


async def test_large_order_waits_for_approval_then_completes(checked: Deployment):
    order_id = await checked.place("large")
    await checked.wait_for(order_id, "awaiting_approval")
    assert (await checked.saga(order_id)).payment_id is None  # never charged before approval
    await checked.client.approve(order_id, by="ops-ann", reason="known customer")
    state = await checked.wait_for(order_id)
    assert state.status == "completed"
    assert state.approved_by == "ops-ann"


async def test_rejected_approval_releases_stock(checked: Deployment):
    order_id = await checked.place("large")
    await checked.wait_for(order_id, "awaiting_approval")
    await checked.client.reject(order_id, by="ops-ann", reason="suspicious")
    state = await checked.wait_for(order_id)
    assert (state.status, state.cancel_reason) == ("cancelled", "approval_rejected")
    assert state.payment_id is None
    assert [c.command for c in state.compensations] == ["inventory.release"]


async def test_out_of_stock_is_cancelled(checked: Deployment):
    order_id = await checked.place("out_of_stock")
    state = await checked.wait_for(order_id)
    assert (state.status, state.cancel_reason) == ("cancelled", "out_of_stock")
    assert state.compensations == ()


async def test_declined_payment_releases_stock(checked: Deployment):
    order_id = await checked.place("declined")
    state = await checked.wait_for(order_id)
    assert (state.status, state.cancel_reason) == ("cancelled", "payment_declined")
    assert [c.command for c in state.compensations] == ["inventory.release"]
    assert all(c.acknowledged for c in state.compensations)


async def test_flaky_payment_is_retried_and_completes(checked: Deployment):
    order_id = await checked.place("flaky")
    state = await checked.wait_for(order_id)
    assert state.status == "completed"
    assert "retry" in checked.platform.log("payment").lower()


async def test_failed_shipment_refunds_then_releases(checked: Deployment):
    order_id = await checked.place("unshippable")
    state = await checked.wait_for(order_id)
    assert (state.status, state.cancel_reason) == ("cancelled", "shipment_failed")
    # Newest step first: the refund, then the release, each acknowledged before cancelling.
    assert [c.command for c in state.compensations] == ["payment.refund", "inventory.release"]
    assert all(c.acknowledged for c in state.compensations)


async def test_bounced_email_still_completes_and_is_dead_lettered(checked: Deployment):
    order_id = await checked.place("bounce")
    state = await checked.wait_for(order_id)
    assert state.status == "completed"
    assert state.email_outcome == "failed"
    assert any("email" in note for note in state.notes)
    letters = [e.letter for e in await checked.client.dead_letters()]
    mine = [d for d in letters if (d.original_key or b"").decode() == order_id]
    assert [d.event_type for d in mine] == ["shipment.scheduled"]
    assert mine[0].consumer.endswith("email")
    assert "bounce" in mine[0].reason


async def test_every_message_delivered_twice_has_no_second_effect(checked: Deployment):
    orders = [await checked.place(s) for s in ("happy", "declined", "unshippable", "large")]
    await checked.wait_for(orders[3], "awaiting_approval")
    await checked.client.approve(orders[3], by="ops-bob")
    states = {o: await checked.wait_for(o) for o in orders}
    records = await _records_of(checked, set(orders))
    assert {r.event_type for r in records} >= {
        "order.placed", "order.approved", "inventory.reserved", "inventory.release",
        "inventory.released", "payment.charged", "payment.declined", "payment.refund",
        "payment.refunded", "shipment.scheduled", "shipment.failed", "crm.customer_updated",
        "email.sent", "order.completed", "order.cancelled", "order.approval_requested",
    }  # fmt: skip
    before = await _end_offsets(checked)
    await checked.client.producer.send_records(records)  # the same bytes, the same event ids
    await asyncio.sleep(5)  # room for any wrongful reaction to be produced
    after = await _end_offsets(checked)
    grown = {tp: after[tp] - before[tp] for tp in after}
    expected: dict[str, int] = {}
    for r in records:
        expected[r.topic] = expected.get(r.topic, 0) + 1
    by_topic: dict[str, int] = {}
    for (topic, _), n in grown.items():
        by_topic[topic] = by_topic.get(topic, 0) + n
    assert by_topic == {t: expected.get(t, 0) for t in by_topic}, "something reacted twice"
    for order_id, state in states.items():
        again = await checked.saga(order_id)
        assert again.version == state.version, f"{order_id} saga changed on redelivery"


async def test_a_service_killed_mid_flow_resumes_without_double_effects(checked: Deployment):
    """The payment deadline (20 s here) is longer than a restart: the orders complete."""
    orders = [await checked.place("happy") for _ in range(5)]
    await checked.platform.kill("payment")
    orders += [await checked.place("flaky") for _ in range(2)]
    await checked.platform.start("payment")
    for order_id in orders:
        assert (await checked.wait_for(order_id)).status == "completed"


async def _records_of(checked: Deployment, orders: set[str]) -> list[OutgoingRecord]:
    return [
        OutgoingRecord(
            r.topic, r.key, r.value, tuple(r.headers), header(r.headers, "event_type") or ""
        )
        async for r in read_to_end(checked.settings, event_topics(checked.settings))
        if (r.key or b"").decode() in orders
    ]


async def _end_offsets(checked: Deployment) -> dict[tuple[str, int], int]:
    settings = checked.settings
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        partitions = await partitions_of(settings, event_topics(settings))
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
