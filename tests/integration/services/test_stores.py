"""One contract suite per service store, run against the in-memory and the PostgreSQL store.

On PostgreSQL every ``async with unit() as store`` is one transaction on its own connection,
as in the runtime's delivery; each test migrates its own schema and drops it at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import pytest

from contracts.parts import Address, ReservedItem
from events.database import Connection, Database, schema_name
from events.model import utc_now
from events.settings import Settings
from services.crm.store import DDL as CRM_DDL
from services.crm.store import CustomerOrder, InMemoryCrmStore, PostgresCrmStore
from services.email.store import DDL as EMAIL_DDL
from services.email.store import InMemoryEmailStore, PostgresEmailStore, Recipient
from services.inventory.store import DDL as INVENTORY_DDL
from services.inventory.store import (
    InMemoryInventoryStore,
    Line,
    PostgresInventoryStore,
    Reservation,
    StockLevel,
    Unavailable,
)
from services.payment.store import DDL as PAYMENT_DDL
from services.payment.store import (
    ChargeSummary,
    InMemoryPaymentStore,
    Intent,
    PostgresPaymentStore,
)
from services.shipping.store import DDL as SHIPPING_DDL
from services.shipping.store import InMemoryShippingStore, Parcel, PostgresShippingStore

pytestmark = pytest.mark.integration

S = TypeVar("S")
Unit = Callable[[], AbstractAsyncContextManager[Any]]
BACKENDS = ["memory", "postgres"]
POSTGRES_ONLY = ["postgres"]
"""For a test of locks: the in-memory stores serve one task and do not lock. Use it as
``@pytest.mark.parametrize("<store fixture>", POSTGRES_ONLY, indirect=True)``."""
DUPLICATE = (ValueError, asyncpg.UniqueViolationError, asyncpg.CheckViolationError)
"""How the two implementations refuse a second outcome for the same key."""


@asynccontextmanager
async def units(
    request: pytest.FixtureRequest,
    settings: Settings,
    service: str,
    ddl: str,
    memory: Callable[[], S],
    postgres: Callable[[Connection, str], S],
) -> AsyncIterator[Unit]:
    """Units of work on one implementation of a store.

    Takes ``settings`` (hence the real stack) for both: the stack fixture must come up before
    the event loop runs, so it cannot be requested lazily from here.
    """
    if request.param == "memory":
        store = memory()

        @asynccontextmanager
        async def memory_unit() -> AsyncIterator[S]:
            yield store

        yield memory_unit
        return
    schema = schema_name(settings, service)
    async with Database(settings) as db:
        await db.migrate(schema, ddl)

        @asynccontextmanager
        async def postgres_unit() -> AsyncIterator[S]:
            async with db.pool.acquire() as conn, conn.transaction():
                yield postgres(conn, schema)

        try:
            yield postgres_unit
        finally:
            await db.pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
async def inventory(request, settings) -> AsyncIterator[Unit]:
    async with units(
        request,
        settings,
        "inventory",
        INVENTORY_DDL,
        InMemoryInventoryStore,
        PostgresInventoryStore,
    ) as unit:
        yield unit


@pytest.fixture(params=BACKENDS)
async def payment(request, settings) -> AsyncIterator[Unit]:
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


@pytest.fixture(params=BACKENDS)
async def crm(request, settings) -> AsyncIterator[Unit]:
    async with units(request, settings, "crm", CRM_DDL, InMemoryCrmStore, PostgresCrmStore) as unit:
        yield unit


@pytest.fixture(params=BACKENDS)
async def email(request, settings) -> AsyncIterator[Unit]:
    async with units(
        request, settings, "email", EMAIL_DDL, InMemoryEmailStore, PostgresEmailStore
    ) as unit:
        yield unit


# --------------------------------------------------------------------------- inventory


async def test_inventory_seed_adds_missing_skus_and_keeps_existing_levels(inventory):
    async with inventory() as store:
        assert await store.seed({"A": 5, "B": 7}) == ["A", "B"]
        assert isinstance(await store.hold("o1", "res-1", {"A": 2}, utc_now()), Reservation)
    async with inventory() as store:
        assert await store.seed({"A": 100, "C": 1}) == ["C"]
        assert await store.stock_levels() == {
            "A": StockLevel("A", 5, 3, 2, 0),
            "B": StockLevel("B", 7, 7, 0, 0),
            "C": StockLevel("C", 1, 1, 0, 0),
        }


async def test_inventory_hold_is_all_or_nothing(inventory):
    now = utc_now()
    async with inventory() as store:
        await store.seed({"A": 5, "B": 1})
        short = await store.hold("o1", "res-1", {"A": 2, "B": 2, "Z": 1}, now)
        assert short == [Unavailable("B", 2, 1, True), Unavailable("Z", 1, 0, False)]
        assert await store.reservation("o1") is None
        assert {s: lv.available for s, lv in (await store.stock_levels()).items()} == {
            "A": 5,
            "B": 1,
        }
        held = await store.hold("o1", "res-1", {"B": 1, "A": 2}, now)
    async with inventory() as store:
        record = await store.reservation("o1")
        assert record == held  # what hold returned is what it recorded
        assert (record.reservation_id, record.status) == ("res-1", "reserved")
        assert record.lines == (Line("A", 2), Line("B", 1))
        assert record.decided_at == now
        assert await store.stock_levels() == {
            "A": StockLevel("A", 5, 3, 2, 0),
            "B": StockLevel("B", 1, 0, 1, 0),
        }


async def test_inventory_records_a_failure_with_its_shortages(inventory):
    now = utc_now()
    async with inventory() as store:
        await store.seed({"A": 1})
        short = await store.hold("o1", "res-1", {"A": 3, "Z": 1}, now)
        failed = await store.record_failure("o1", "unknown_sku", short, now)
    async with inventory() as store:
        assert await store.reservation("o1") == failed
        assert failed.status == "failed"
        assert failed.reservation_id is None
        assert failed.reason == "unknown_sku"
        assert failed.lines == (Line("A", 3, 1), Line("Z", 1, 0))


async def test_inventory_release_returns_units_once_and_marks_unknown_orders(inventory):
    now = utc_now()
    async with inventory() as store:
        await store.seed({"A": 5})
        await store.hold("o1", "res-1", {"A": 2}, now)
    for _ in range(2):
        async with inventory() as store:
            released = await store.release("o1", now)
            assert (released.reservation_id, released.status) == ("res-1", "released")
    async with inventory() as store:
        assert await store.stock_levels() == {"A": StockLevel("A", 5, 5, 0, 0)}
        marker = await store.release("o2", now)
        assert (marker.reservation_id, marker.status) == (None, "released")
        assert await store.reservation("o2") == marker


async def test_inventory_ship_then_release_conserves_stock(inventory):
    now = utc_now()
    async with inventory() as store:
        await store.seed({"A": 5})
        await store.hold("o1", "res-1", {"A": 2}, now)
        assert await store.ship("o1", now) is True
        assert await store.ship("o1", now) is False
        assert await store.ship("o-unknown", now) is False
        assert await store.stock_levels() == {"A": StockLevel("A", 5, 3, 0, 2)}
    async with inventory() as store:
        await store.release("o1", now)
        levels = await store.stock_levels()
        assert levels == {"A": StockLevel("A", 5, 5, 0, 0)}
        assert all(level.balanced for level in levels.values())
        assert (await store.reservation("o1")).status == "released"


async def test_inventory_concurrent_orders_for_the_last_units_reserve_exactly_once(inventory):
    async with inventory() as store:
        await store.seed({"RARE": 5})

    async def order(order_id: str) -> Reservation | list[Unavailable]:
        async with inventory() as store:
            await store.lock_order(order_id)
            short = await store.hold(order_id, f"res-{order_id}", {"RARE": 3}, utc_now())
            await asyncio.sleep(0.2)  # keep the row locks while the other transaction tries
            return short

    results = await asyncio.gather(order("o1"), order("o2"))
    assert sorted(isinstance(held, Reservation) for held in results) == [False, True]
    assert [held for held in results if not isinstance(held, Reservation)] == [
        [Unavailable("RARE", 3, 2, True)]
    ]
    async with inventory() as store:
        assert await store.stock_levels() == {"RARE": StockLevel("RARE", 5, 2, 3, 0)}


@pytest.mark.parametrize("inventory", POSTGRES_ONLY, indirect=True)
async def test_inventory_a_move_reads_its_reservation_with_its_stock_rows_locked(inventory):
    async with inventory() as store:
        await store.seed({"A": 5, "B": 5, "C": 5})
        held = await store.hold("o1", "res-1", {"A": 2, "B": 1}, utc_now())

    async def lockable(store: PostgresInventoryStore, sku: str) -> bool:
        try:
            async with store.conn.transaction():  # a savepoint: the refusal aborts only it
                await store.conn.execute(
                    f"SELECT 1 FROM {store.schema}.stock WHERE sku = $1 FOR UPDATE NOWAIT", sku
                )
        except asyncpg.LockNotAvailableError:
            return False
        return True

    async with inventory() as reader:
        assert await reader.reservation("o1") == held  # a plain read locks nothing
        async with inventory() as other:
            assert [await lockable(other, sku) for sku in "ABC"] == [True, True, True]
    async with inventory() as mover:
        assert await mover._reservation("o1", lock_stock=True) == held
        async with inventory() as other:
            assert [await lockable(other, sku) for sku in "ABC"] == [False, False, True]


# --------------------------------------------------------------------------- payment


async def test_payment_intent_is_saved_once(payment):
    async with payment() as store:
        assert await store.save_intent(Intent("o1", 1000, "EUR", "tok_visa")) is True
        assert await store.save_intent(Intent("o1", 9, "USD", "tok_other")) is False
    async with payment() as store:
        assert await store.intent("o1") == Intent("o1", 1000, "EUR", "tok_visa")
        assert await store.intent("o2") is None


async def test_payment_charge_round_trips_and_is_refunded_at_most_once(payment):
    now = utc_now()
    async with payment() as store:
        charged = await store.record_charge("o1", "pay-1", 1000, "EUR", 3, now)
    async with payment() as store:
        assert await store.payment("o1") == charged
        assert (charged.outcome, charged.attempt, charged.refunded_at) == ("charged", 3, None)
        assert await store.charges() == {"o1": ChargeSummary("pay-1", 1000, False, 0)}
        refunded = await store.record_refund("o1", executed=True, currency="EUR", at=now)
        assert (refunded.refund_count, refunded.refunded_at) == (1, now)
    async with payment() as store:
        later = now + timedelta(seconds=5)
        again = await store.record_refund("o1", executed=False, currency="EUR", at=later)
        assert again == refunded  # an acknowledgement again, nothing changes
        assert await store.charges() == {"o1": ChargeSummary("pay-1", 1000, True, 1)}
    with pytest.raises(DUPLICATE):
        async with payment() as store:
            await store.record_refund("o1", executed=True, currency="EUR", at=now)
    with pytest.raises(DUPLICATE):
        async with payment() as store:
            await store.record_charge("o1", "pay-2", 1000, "EUR", 1, now)


async def test_payment_decline_and_refund_without_charge_close_the_order(payment):
    now = utc_now()
    async with payment() as store:
        declined = await store.record_decline("o1", "card_declined", "EUR", now)
        assert await store.payment("o1") == declined
        assert (declined.outcome, declined.decline_reason) == ("declined", "card_declined")
        closed = await store.record_refund("o1", executed=False, currency="EUR", at=now)
        assert (closed.outcome, closed.refund_count, closed.refunded_at) == ("declined", 0, now)
        marker = await store.record_refund("o2", executed=False, currency="USD", at=now)
    async with payment() as store:
        assert await store.payment("o2") == marker
        assert (marker.outcome, marker.payment_id, marker.amount_minor) == ("none", None, 0)
        assert (marker.currency, marker.refunded_at) == ("USD", now)
        assert await store.charges() == {}


async def test_payment_and_intent_are_read_together(payment):
    now = utc_now()
    intent = Intent("o1", 1000, "EUR", "tok_visa")
    async with payment() as store:
        await store.save_intent(intent)
        declined = await store.record_decline("o2", "card_declined", "EUR", now)
    async with payment() as store:
        assert await store.payment_and_intent("o1") == (None, intent)
        assert await store.payment_and_intent("o2") == (declined, None)
        assert await store.payment_and_intent("o3") == (None, None)
        charged = await store.record_charge("o1", "pay-1", 1000, "EUR", 1, now)
    async with payment() as store:
        assert await store.payment_and_intent("o1") == (charged, intent)


@pytest.mark.parametrize("payment", POSTGRES_ONLY, indirect=True)
async def test_lock_order_serializes_transactions_of_one_order_only(payment):
    finished: list[str] = []

    async def charge_slowly() -> None:
        async with payment() as store:
            await store.lock_order("o1")
            await asyncio.sleep(0.3)  # a slow gateway call, with the lock held
            await store.record_charge("o1", "pay-1", 1000, "EUR", 1, utc_now())
        finished.append("charge o1")

    async def refund() -> str | None:
        await asyncio.sleep(0.05)
        async with payment() as store:
            await store.lock_order("o1")
            charged = await store.payment("o1")  # must see the charge committed meanwhile
        finished.append("refund o1")
        return charged.payment_id if charged else None

    async def other_order() -> None:
        await asyncio.sleep(0.05)
        async with payment() as store:
            await store.lock_order("o2")
        finished.append("o2")

    _, seen, _ = await asyncio.gather(charge_slowly(), refund(), other_order())
    assert seen == "pay-1"
    assert finished == ["o2", "charge o1", "refund o1"]


# --------------------------------------------------------------------------- shipping

ADDRESS = Address(
    recipient="Ada Lovelace",
    line1="12 Analytical Way",
    city="Berlin",
    postal_code="10115",
    country_code="DE",
)


async def test_shipping_parcel_is_saved_once_and_round_trips(shipping):
    items = (ReservedItem(sku="B", quantity=2), ReservedItem(sku="A", quantity=1))
    other = ADDRESS.model_copy(update={"line2": "Flat 3", "country_code": "FR"})
    async with shipping() as store:
        assert await store.save_parcel(Parcel("o1", ADDRESS, items)) is True
        assert await store.save_parcel(Parcel("o1", other, items[:1])) is False
        assert await store.save_parcel(Parcel("o2", other, items[:1])) is True
    async with shipping() as store:
        assert await store.parcel("o1") == Parcel("o1", ADDRESS, items)
        assert await store.parcel("o2") == Parcel("o2", other, items[:1])
        assert await store.parcel("o3") is None


async def test_shipping_outcomes_round_trip_and_cancel_closes_once(shipping):
    now = utc_now()
    eta = now + timedelta(days=3)
    later = now + timedelta(seconds=5)
    async with shipping() as store:
        booked = await store.record_scheduled("o1", "shp-1", "DHL", "DE", eta, now)
        failed = await store.record_failed("o2", "country_not_served", "AQ", now)
    async with shipping() as store:
        assert await store.shipment("o1") == booked
        assert await store.shipment("o2") == failed
        assert (failed.outcome, failed.shipment_id, failed.reason) == (
            "failed",
            None,
            "country_not_served",
        )
        cancelled = await store.record_cancelled("o1", now)
        assert (cancelled.shipment_id, cancelled.cancelled_at) == ("shp-1", now)
    async with shipping() as store:
        assert await store.record_cancelled("o1", later) == cancelled  # the first cancel stays
        marker = await store.record_cancelled("o3", now)
        assert (marker.outcome, marker.shipment_id, marker.cancelled_at) == ("none", None, now)
        assert await store.shipment("o3") == marker
    with pytest.raises(DUPLICATE):
        async with shipping() as store:
            await store.record_scheduled("o1", "shp-2", "DHL", "DE", eta, now)


async def test_shipping_shipment_and_parcel_are_read_together(shipping):
    now = utc_now()
    items = (ReservedItem(sku="B", quantity=2), ReservedItem(sku="A", quantity=1))
    # The parcel's country and the shipment's are columns of the same name in two tables.
    parcel = Parcel("o1", ADDRESS.model_copy(update={"line2": "Flat 3"}), items)
    async with shipping() as store:
        await store.save_parcel(parcel)
        failed = await store.record_failed("o2", "country_not_served", "AQ", now)
    async with shipping() as store:
        assert await store.shipment_and_parcel("o1") == (None, parcel)
        assert await store.shipment_and_parcel("o2") == (failed, None)
        assert await store.shipment_and_parcel("o3") == (None, None)
        booked = await store.record_scheduled("o1", "shp-1", "DHL", "FR", None, now)
    async with shipping() as store:
        assert await store.shipment_and_parcel("o1") == (booked, parcel)


# --------------------------------------------------------------------------- crm


async def test_crm_counts_each_order_once_per_customer_and_currency(crm):
    now = utc_now()
    later = now + timedelta(seconds=5)
    async with crm() as store:
        assert await store.save_order(CustomerOrder("o1", "c1", 1000, "EUR")) is True
        assert await store.save_order(CustomerOrder("o1", "c1", 9999, "EUR")) is False
        await store.save_order(CustomerOrder("o2", "c1", 250, "EUR"))
        await store.save_order(CustomerOrder("o3", "c1", 700, "USD"))
        first, counted = await store.count_order("o1", now)
        assert counted is True
        assert (first.orders_count, first.lifetime_value_minor) == (1, 1000)
    async with crm() as store:
        second, _ = await store.count_order("o2", later)
        assert (second.orders_count, second.lifetime_value_minor, second.updated_at) == (
            2,
            1250,
            later,
        )
        # Counted before: unchanged, and says so.
        assert await store.count_order("o1", later) == (first, False)
        usd, _ = await store.count_order("o3", now)
        assert (usd.currency, usd.orders_count, usd.lifetime_value_minor) == ("USD", 1, 700)
    async with crm() as store:
        assert await store.profile("c1", "EUR") == second
        assert await store.profile("c2", "EUR") is None
        order = await store.order("o1")
        assert (order.customer_id, order.total_minor, order.counted) == ("c1", 1000, first)
        with pytest.raises(LookupError):
            await store.count_order("o-unknown", now)


async def test_crm_concurrent_orders_of_one_customer_both_count(crm):
    async with crm() as store:
        await store.save_order(CustomerOrder("o1", "c1", 100, "EUR"))
        await store.save_order(CustomerOrder("o2", "c1", 200, "EUR"))

    async def count(order_id: str) -> None:
        async with crm() as store:
            await store.count_order(order_id, utc_now())
            await asyncio.sleep(0.1)  # hold the customer row while the other one counts

    await asyncio.gather(count("o1"), count("o2"))
    async with crm() as store:
        profile = await store.profile("c1", "EUR")
        assert (profile.orders_count, profile.lifetime_value_minor) == (2, 300)


# --------------------------------------------------------------------------- email


async def test_email_recipient_is_saved_once(email):
    async with email() as store:
        assert await store.save_recipient(Recipient("o1", "ada@example.com", "Ada")) is True
        assert await store.save_recipient(Recipient("o1", "eve@example.com", None)) is False
    async with email() as store:
        assert await store.recipient("o1") == Recipient("o1", "ada@example.com", "Ada")
        assert await store.recipient("o2") is None


async def test_email_at_most_one_mail_per_order_and_template(email):
    now = utc_now()
    async with email() as store:
        first = await store.record_sent("o1", "order_confirmation", "msg-1", now)
        again = await store.record_sent("o1", "order_confirmation", "msg-2", now)
        assert again == first
        cancel = await store.record_sent("o1", "order_cancelled", "msg-3", now)
        await store.record_sent("o2", "order_confirmation", "msg-4", now)
    async with email() as store:
        assert await store.sent("o1") == [cancel, first]
        assert [mail.message_id for mail in await store.sent("o2")] == ["msg-4"]
        assert await store.sent("o3") == []


async def test_email_sent_mails_and_recipient_are_read_together(email):
    now = utc_now()
    ada = Recipient("o1", "ada@example.com", "Ada")
    async with email() as store:
        assert await store.sent_and_recipient("o1") == ([], None)
        await store.save_recipient(ada)
        assert await store.sent_and_recipient("o1") == ([], ada)
        confirmation = await store.record_sent("o1", "order_confirmation", "msg-1", now)
        cancellation = await store.record_sent("o1", "order_cancelled", "msg-2", now)
        other = await store.record_sent("o2", "order_confirmation", "msg-3", now)
    async with email() as store:
        assert await store.sent_and_recipient("o1") == ([cancellation, confirmation], ada)
        assert await store.sent_and_recipient("o2") == ([other], None)
