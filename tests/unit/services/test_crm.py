"""CRM handlers on the in-memory store: each shipped order is counted once."""

from __future__ import annotations

import pytest

from contracts.catalog import CrmCustomerUpdated, ShipmentScheduled
from contracts.samples import sample_order_placed
from events.errors import TransientError
from events.model import Message, utc_now
from events.settings import get_settings
from services.crm import SERVICE_NAME, handlers
from services.crm.context import CrmContext, CrmSettings
from services.crm.provider import SimulatedCrm
from services.crm.service import build
from services.crm.store import InMemoryCrmStore
from tests.unit.services import emitted


@pytest.fixture
def ctx() -> CrmContext:
    return CrmContext(InMemoryCrmStore(), SimulatedCrm(), CrmSettings())


def placed(order_id: str, price: int) -> Message:
    order = sample_order_placed(skus=(("SKU-RED-MUG", 1, price),))
    return Message.first(order, saga_type="order", saga_key=order_id, producer="test")


def scheduled(order_id: str) -> Message:
    event = ShipmentScheduled(
        shipment_id="shp-1", carrier="DHL", country_code="DE", scheduled_at=utc_now()
    )
    return Message.first(event, saga_type="order", saga_key=order_id, producer="shipping")


async def test_a_shipped_order_counts_in_the_customer_profile_and_is_pushed(ctx):
    assert await emitted(handlers.remember_order(placed("o1", 1000), ctx)) == []
    [event] = await emitted(handlers.count_order(scheduled("o1"), ctx))
    assert isinstance(event, CrmCustomerUpdated)
    assert (event.customer_id, event.orders_count, event.lifetime_value_minor) == (
        "cust-0001",
        1,
        1000,
    )
    assert ctx.provider.profiles == {("cust-0001", "EUR"): (1, 1000)}


async def test_orders_of_one_customer_add_up(ctx):
    for order_id, price in (("o1", 1000), ("o2", 250)):
        await emitted(handlers.remember_order(placed(order_id, price), ctx))
        await emitted(handlers.count_order(scheduled(order_id), ctx))
    profile = await ctx.store.profile("cust-0001", "EUR")
    assert (profile.orders_count, profile.lifetime_value_minor) == (2, 1250)


async def test_a_repeated_shipment_counts_once_and_re_emits_the_same_update(ctx):
    await emitted(handlers.remember_order(placed("o1", 1000), ctx))
    [first] = await emitted(handlers.count_order(scheduled("o1"), ctx))
    await emitted(handlers.remember_order(placed("o2", 500), ctx))
    await emitted(handlers.count_order(scheduled("o2"), ctx))
    [again] = await emitted(handlers.count_order(scheduled("o1"), ctx))
    assert again == first
    assert ctx.provider.profiles == {("cust-0001", "EUR"): (2, 1500)}  # no stale push
    profile = await ctx.store.profile("cust-0001", "EUR")
    assert (profile.orders_count, profile.lifetime_value_minor) == (2, 1500)


async def test_a_repeated_order_placed_does_not_change_the_total(ctx):
    await emitted(handlers.remember_order(placed("o1", 1000), ctx))
    await emitted(handlers.remember_order(placed("o1", 9999), ctx))
    [event] = await emitted(handlers.count_order(scheduled("o1"), ctx))
    assert event.lifetime_value_minor == 1000


async def test_a_shipment_before_the_order_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"order\.placed not seen"):
        await emitted(handlers.count_order(scheduled("o1"), ctx))


async def test_an_unavailable_crm_is_a_transient_failure():
    ctx = CrmContext(InMemoryCrmStore(), SimulatedCrm(failure_rate=1.0), CrmSettings())
    await emitted(handlers.remember_order(placed("o1", 1000), ctx))
    with pytest.raises(TransientError):
        await emitted(handlers.count_order(scheduled("o1"), ctx))


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("CHOREO_CRM_FAILURE_RATE", "0.3")
    monkeypatch.setenv("CHOREO_CRM_TIMEOUT_S", "1.5")
    assert CrmSettings() == CrmSettings(failure_rate=0.3, timeout_s=1.5)


def test_build_declares_the_service():
    service = build(get_settings(), CrmSettings())
    assert service.name == SERVICE_NAME == "crm"
    assert service.router.event_types == ["order.placed", "shipment.scheduled"]
