"""The five services as built by their ``build`` functions, run by the real ServiceRuntime on
Kafka and PostgreSQL: seeding, the forward flow, a bounce, and a retried compensation.

The test plays the coordinator's part by publishing ``order.approved`` and the compensation
commands itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from contracts.catalog import (
    EmailFailed,
    InventoryRelease,
    InventoryReleased,
    OrderApproved,
    PaymentCharged,
)
from contracts.samples import sample_order_placed
from events.codec import Codec
from events.database import Database, schema_name
from events.dlq import DeadLetter
from events.model import Message, utc_now
from events.producer import EventProducer
from events.service import ServiceRuntime
from events.settings import Settings
from events.topics import topic_for
from services.crm.service import build as build_crm
from services.email.service import build as build_email
from services.inventory.service import build as build_inventory
from services.inventory.store import PostgresInventoryStore
from services.payment.service import build as build_payment
from services.shipping.service import build as build_shipping
from tests.integration.kafka_helpers import read_records

pytestmark = pytest.mark.integration

BUILDS = (build_inventory, build_payment, build_shipping, build_crm, build_email)
NAMES = ("inventory", "payment", "shipping", "crm", "email")


@pytest.fixture
async def services(
    settings: Settings, codec: Codec, topics: list[str]
) -> AsyncIterator[list[ServiceRuntime]]:
    settings = settings.model_copy(update={"handler_backoff_initial_ms": 20})
    runtimes: list[ServiceRuntime] = [ServiceRuntime(b(settings), settings, codec) for b in BUILDS]
    tasks = []
    try:
        for runtime in runtimes:
            await runtime.start()
            tasks.append(asyncio.create_task(runtime.run()))
        yield runtimes
    finally:
        for runtime in runtimes:
            await runtime.stop()
        for task in tasks:
            await task
        for runtime in runtimes:
            await runtime.close()
        async with Database(settings) as db:
            for name in NAMES:
                await db.pool.execute(
                    f"DROP SCHEMA IF EXISTS {schema_name(settings, name)} CASCADE"
                )


async def stock(runtime: ServiceRuntime) -> dict[str, tuple[int, int, int, int]]:
    async with runtime.db.pool.acquire() as conn:
        levels = await PostgresInventoryStore(conn, runtime.schema).stock_levels()
    return {s: (lv.seeded, lv.available, lv.reserved, lv.shipped) for s, lv in levels.items()}


async def test_services_carry_orders_through_the_flow_and_acknowledge_compensation(
    settings: Settings, codec: Codec, producer: EventProducer, services: list[ServiceRuntime]
):
    inventory = services[0]
    assert await stock(inventory) == {
        "SKU-BLUE-PEN": (1000, 1000, 0, 0),
        "SKU-GOLD-WATCH": (50, 50, 0, 0),
        "SKU-RARE-VASE": (5, 5, 0, 0),
        "SKU-RED-MUG": (1000, 1000, 0, 0),
        "SKU-TEA-BOX": (1000, 1000, 0, 0),
    }
    orders = {
        "o-happy": sample_order_placed(),
        "o-bounce": sample_order_placed(email="nobody@bounce.example"),
        "o-rare": sample_order_placed(skus=(("SKU-RARE-VASE", 500, 9_900),)),
    }
    placed = [
        Message.first(o, saga_type="order", saga_key=oid, producer="test")
        for oid, o in orders.items()
    ]
    approvals = [
        Message.first(
            OrderApproved(approved_by="saga-coordinator", approved_at=utc_now()),
            saga_type="order",
            saga_key=oid,
            producer="saga-coordinator",
        )
        for oid in ("o-happy", "o-bounce")
    ]
    await producer.publish([*placed, *approvals])

    # The coordinator releases only after it learned of the failure; a release that inventory
    # handles before the order (they are on different topics) rightly blocks the reservation.
    async def failure_recorded() -> bool:
        async with inventory.db.pool.acquire() as conn:
            record = await PostgresInventoryStore(conn, inventory.schema).reservation("o-rare")
        return record is not None and record.status == "failed"

    deadline = time.monotonic() + 30
    while not await failure_recorded():
        assert time.monotonic() < deadline, "o-rare's reservation failure was not recorded"
        await asyncio.sleep(0.1)
    release = InventoryRelease(reason="out_of_stock", requested_at=utc_now())
    releases = [  # the coordinator's retry: the same command under a new event id
        Message.first(release, saga_type="order", saga_key="o-rare", producer="saga-coordinator")
        for _ in range(2)
    ]
    await producer.publish(releases)

    outputs = [
        "inventory.reserved",
        "inventory.reservation_failed",
        "payment.charged",
        "shipment.scheduled",
        "crm.customer_updated",
        "email.sent",
    ]
    topics_out = sorted({topic_for(t, settings) for t in outputs})
    # The 2 release commands, and the services' 2 reserved + 1 failed + 2 released, 2 charged,
    # 2 scheduled, 2 CRM updates, 1 sent + 1 failed email.
    records = await read_records(settings, topics_out, 15, timeout=60)
    messages = [codec.decode(r.value) for r in records]
    messages = [m for m in messages if m.envelope.producer != "saga-coordinator"]
    seen = Counter((m.saga_key, m.envelope.event_type) for m in messages)
    assert seen == Counter(
        {
            ("o-happy", "inventory.reserved"): 1,
            ("o-bounce", "inventory.reserved"): 1,
            ("o-rare", "inventory.reservation_failed"): 1,
            ("o-rare", "inventory.released"): 2,
            ("o-happy", "payment.charged"): 1,
            ("o-bounce", "payment.charged"): 1,
            ("o-happy", "shipment.scheduled"): 1,
            ("o-bounce", "shipment.scheduled"): 1,
            ("o-happy", "crm.customer_updated"): 1,
            ("o-bounce", "crm.customer_updated"): 1,
            ("o-happy", "email.sent"): 1,
            ("o-bounce", "email.failed"): 1,
        }
    )
    by_type = {(m.saga_key, m.envelope.event_type): m.event for m in messages}
    charged = by_type["o-happy", "payment.charged"]
    assert isinstance(charged, PaymentCharged)
    assert charged.amount_minor == orders["o-happy"].total_minor
    failed = by_type["o-bounce", "email.failed"]
    assert isinstance(failed, EmailFailed)
    assert failed.permanent is True
    assert "bounce" in failed.reason
    assert "nobody@" not in failed.reason
    released = by_type["o-rare", "inventory.released"]
    assert isinstance(released, InventoryReleased)
    assert released.reservation_id is None
    for message in messages:
        assert message.envelope.producer in NAMES

    # Inventory counts the shipped units once shipping is scheduled; nothing is created or lost.
    async def shipped() -> bool:
        return (await stock(inventory))["SKU-RED-MUG"] == (1000, 996, 0, 4)

    deadline = time.monotonic() + 30
    while not await shipped():
        assert time.monotonic() < deadline, f"shipped units not counted: {await stock(inventory)}"
        await asyncio.sleep(0.1)
    assert (await stock(inventory))["SKU-RARE-VASE"] == (5, 5, 0, 0)

    # Seeding again (a restart) keeps the levels.
    assert inventory.service.on_start is not None
    await inventory.service.on_start(inventory)
    assert (await stock(inventory))["SKU-RED-MUG"] == (1000, 996, 0, 4)

    # The bounced confirmation went to the dead-letter topic.
    [record] = await read_records(settings, [settings.dlq_topic], 1)
    dead = DeadLetter.model_validate_json(record.value)
    assert (dead.event_type, dead.original_key) == ("shipment.scheduled", b"o-bounce")
    assert dead.consumer == f"{settings.topic_prefix}email"
    assert "nobody@" not in dead.reason
