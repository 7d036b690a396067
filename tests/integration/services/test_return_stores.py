"""The returns saga's store operations, one contract suite run against the in-memory and the
PostgreSQL stores (as ``test_stores.py``: each ``async with unit() as store`` is one transaction
on its own connection; each test migrates its own schema and drops it at the end), and the
payment handler's refunds of concurrent returns of one order on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from contracts.parts import ReservedItem
from contracts.returns import InventoryRestocked, PaymentReturnRefundDeclined, PaymentReturnRefunded
from events.database import Connection
from events.model import Message, utc_now
from services.inventory.return_store import DDL as RETURNS_DDL
from services.inventory.return_store import (
    InMemoryReturnStore,
    PostgresReturnStore,
    Restock,
    ReturnedGoods,
    ReturnedLine,
    ReturnStore,
)
from services.inventory.store import DDL as INVENTORY_DDL
from services.inventory.store import (
    InMemoryInventoryStore,
    InventoryStore,
    Line,
    PostgresInventoryStore,
    Reservation,
    StockLevel,
    Unavailable,
)
from services.payment import returns as payment_returns
from services.payment.context import PaymentContext, PaymentSettings
from services.payment.provider import SimulatedGateway
from services.payment.store import DDL as PAYMENT_DDL
from services.payment.store import InMemoryPaymentStore, PostgresPaymentStore, ReturnRefund
from services.shipping.store import DDL as SHIPPING_DDL
from services.shipping.store import (
    InMemoryShippingStore,
    Pickup,
    PostgresShippingStore,
    ReturnParcel,
)
from tests.integration.services.test_stores import ADDRESS, BACKENDS, DUPLICATE, Unit, units

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Stores:
    """The inventory's two stores on one transaction, as :class:`InventoryContext` has them."""

    stock: InventoryStore
    returns: ReturnStore


def _memory_inventory() -> Stores:
    return Stores(InMemoryInventoryStore(), InMemoryReturnStore())


def _postgres_inventory(conn: Connection, schema: str) -> Stores:
    return Stores(PostgresInventoryStore(conn, schema), PostgresReturnStore(conn, schema))


@pytest.fixture(params=BACKENDS)
async def inventory(request, settings) -> AsyncIterator[Unit]:
    ddl = INVENTORY_DDL + RETURNS_DDL
    async with units(
        request, settings, "inventory", ddl, _memory_inventory, _postgres_inventory
    ) as unit:
        yield unit


@pytest.fixture(params=BACKENDS)
async def payment(request, settings) -> AsyncIterator[Unit]:
    async with units(
        request, settings, "payment", PAYMENT_DDL, InMemoryPaymentStore, PostgresPaymentStore
    ) as unit:
        yield unit


@pytest.fixture(params=["postgres"])
async def postgres_payment(request, settings) -> AsyncIterator[Unit]:
    """Only PostgreSQL: the in-memory stores serve one task and do not lock."""
    async with units(
        request, settings, "payment", PAYMENT_DDL, InMemoryPaymentStore, PostgresPaymentStore
    ) as unit:
        yield unit


@pytest.fixture(params=BACKENDS)
async def shipping(request, settings) -> AsyncIterator[Unit]:
    async with units(
        request, settings, "shipping", SHIPPING_DDL, InMemoryShippingStore, PostgresShippingStore
    ) as unit:
        yield unit


# --------------------------------------------------------------------------- shipping


async def test_shipping_return_parcel_is_saved_once_and_round_trips(shipping):
    items = (ReservedItem(sku="B", quantity=2), ReservedItem(sku="A", quantity=1))
    other = ADDRESS.model_copy(update={"line2": "Flat 3", "country_code": "FR"})
    async with shipping() as store:
        assert await store.save_return_parcel(ReturnParcel("r1", ADDRESS, items)) is True
        assert await store.save_return_parcel(ReturnParcel("r1", other, items[:1])) is False
    async with shipping() as store:
        assert await store.return_parcel("r1") == ReturnParcel("r1", ADDRESS, items)
        assert await store.return_parcel("r2") is None
        assert await store.parcel("r1") is None  # an order's parcels are apart


async def test_shipping_pickups_round_trip_and_cancel_closes_once(shipping):
    now = utc_now()
    later = now + timedelta(seconds=5)
    booked = Pickup("r1", "scheduled", now, "pck-1", "DHL", "DE")
    failed = Pickup("r2", "failed", now, country_code="AQ", reason="country_not_served")
    async with shipping() as store:
        assert await store.record_pickup(booked) == booked
        await store.record_pickup(failed)
    async with shipping() as store:
        assert await store.pickup("r1") == booked
        assert await store.pickup("r2") == failed
        cancelled = await store.record_pickup_cancelled("r1", now)
        assert (cancelled.pickup_id, cancelled.cancelled_at) == ("pck-1", now)
    async with shipping() as store:
        assert await store.record_pickup_cancelled("r1", later) == cancelled
        marker = await store.record_pickup_cancelled("r3", now)
        assert (marker.outcome, marker.pickup_id, marker.cancelled_at) == ("none", None, now)
        assert await store.pickup("r3") == marker
        assert await store.shipment("r1") is None
    with pytest.raises(DUPLICATE):
        async with shipping() as store:
            await store.record_pickup(Pickup("r1", "scheduled", now, "pck-2", "DHL", "DE"))


# --------------------------------------------------------------------------- inventory


async def test_inventory_take_in_and_out_move_seeded_and_available_alike(inventory):
    async with inventory() as stores:
        await stores.stock.seed({"A": 5})
        assert isinstance(await stores.stock.hold("o1", "res-1", {"A": 2}, utc_now()), Reservation)
        await stores.stock.take_in({"A": 3, "NEW": 2})
    async with inventory() as stores:
        assert await stores.stock.stock_levels() == {
            "A": StockLevel("A", 8, 6, 2, 0),
            "NEW": StockLevel("NEW", 2, 2, 0, 0),
        }
        assert await stores.stock.take_out({"A": 3, "NEW": 3}) == [Unavailable("NEW", 3, 2, True)]
        assert await stores.stock.take_out({"A": 3, "NONE": 1}) == [
            Unavailable("NONE", 1, 0, False)
        ]
        assert await stores.stock.take_out({"A": 3, "NEW": 2}) == []
    async with inventory() as stores:
        levels = await stores.stock.stock_levels()
        assert levels == {"A": StockLevel("A", 5, 3, 2, 0), "NEW": StockLevel("NEW", 0, 0, 0, 0)}
        assert all(level.balanced for level in levels.values())


async def test_inventory_returns_and_restocks_round_trip_and_unstock_closes_once(inventory):
    now = utc_now()
    later = now + timedelta(seconds=5)
    goods = ReturnedGoods(
        "r1", "o1", (ReturnedLine("B", 2, "opened"), ReturnedLine("A", 1, "damaged"))
    )
    restocked = Restock("r1", "restocked", now, "rst-1", lines=(Line("A", 1), Line("B", 2)))
    refused = Restock("r2", "refused", now, reason="damaged", lines=(Line("A", 1),))
    async with inventory() as stores:
        assert await stores.returns.save_return(goods) is True
        assert await stores.returns.save_return(ReturnedGoods("r1", "o9", ())) is False
        assert await stores.returns.record_restock(restocked) == restocked
        await stores.returns.record_restock(refused)
    async with inventory() as stores:
        assert await stores.returns.returned("r1") == goods
        assert await stores.returns.returned("r2") is None
        assert await stores.returns.restock("r1") == restocked
        assert await stores.returns.restock("r2") == refused
        closed = await stores.returns.record_unstocked("r1", now)
        assert (closed.restock_id, closed.unstocked_at) == ("rst-1", now)
        assert closed.lines == restocked.lines
    async with inventory() as stores:
        assert await stores.returns.record_unstocked("r1", later) == closed
        marker = await stores.returns.record_unstocked("r3", now)
        assert (marker.outcome, marker.restock_id, marker.unstocked_at) == ("none", None, now)
        assert await stores.returns.restock("r3") == marker
    with pytest.raises(DUPLICATE):
        async with inventory() as stores:
            await stores.returns.record_restock(Restock("r1", "restocked", now, "rst-2"))


# --------------------------------------------------------------------------- payment


async def test_payment_return_refunds_round_trip_and_are_decided_once(payment):
    now = utc_now()
    async with payment() as store:
        asked = ReturnRefund("r1", "o1", 1250, "EUR")
        assert await store.save_return_refund(asked) is True
        assert await store.save_return_refund(ReturnRefund("r1", "o1", 9, "USD")) is False
        await store.save_return_refund(ReturnRefund("r2", "o1", 500, "EUR"))
        await store.save_return_refund(ReturnRefund("r3", "o2", 700, "EUR"))
    async with payment() as store:
        assert await store.return_refund("r1") == asked
        assert await store.return_refund("r9") is None
        refunded = ReturnRefund(
            "r1", "o1", 1250, "EUR", "refunded", "rfd-1", "pay-1", None, 2149, now
        )
        assert await store.record_return_refund(refunded) == refunded
        declined = ReturnRefund(
            "r3",
            "o2",
            700,
            "EUR",
            "declined",
            reason="no_charge",
            refundable_minor=0,
            decided_at=now,
        )
        await store.record_return_refund(declined)
    async with payment() as store:
        assert await store.return_refund("r1") == refunded
        assert await store.return_refund("r3") == declined
        assert await store.returned_minor("o1") == 1250  # r2 is undecided, o2 was declined
        assert await store.returned_minor("o2") == 0
    with pytest.raises(ValueError, match="already decided"):
        async with payment() as store:
            await store.record_return_refund(refunded)
    with pytest.raises(ValueError, match="unknown"):
        async with payment() as store:
            await store.record_return_refund(ReturnRefund("r9", "o1", 1, "EUR", "declined"))


async def test_concurrent_returns_of_one_order_never_refund_more_than_was_charged(
    postgres_payment,
):
    async with postgres_payment() as store:
        await store.record_charge("o1", "pay-1", 3000, "EUR", 1, utc_now())
        for return_id in ("r1", "r2"):
            await store.save_return_refund(ReturnRefund(return_id, "o1", 2000, "EUR"))
    gateway = SimulatedGateway()

    async def refund(return_id: str) -> list:
        event = InventoryRestocked(
            restock_id=f"rst-{return_id}",
            items=(ReservedItem(sku="A", quantity=1),),
            restocked_at=utc_now(),
        )
        message = Message.first(event, saga_type="return", saga_key=return_id, producer="t")
        async with postgres_payment() as store:
            ctx = PaymentContext(store, gateway, PaymentSettings())
            emitted = list(await payment_returns.refund_return(message, ctx))
            await asyncio.sleep(0.2)  # keep the order's lock while the other one tries
            return emitted

    results = await asyncio.gather(refund("r1"), refund("r2"))
    kinds = sorted(type(events[0]).__name__ for events in results)
    assert kinds == [PaymentReturnRefundDeclined.__name__, PaymentReturnRefunded.__name__]
    assert len(gateway.part_refunds) == 1
    async with postgres_payment() as store:
        assert await store.returned_minor("o1") == 2000
