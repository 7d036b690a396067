"""Shipping handlers on the in-memory store and the simulated carrier."""

from __future__ import annotations

import logging
import random

import pytest

from contracts.catalog import (
    PaymentCharged,
    ShipmentCancel,
    ShipmentCancelled,
    ShipmentFailed,
    ShipmentScheduled,
)
from contracts.parts import ReservedItem
from contracts.personal import seal_personal_data
from contracts.samples import sample_order_placed
from events.errors import TransientError
from events.model import Message, utc_now
from events.personal_data import InMemoryKeyring, is_sealed
from events.settings import get_settings
from services.shipping import SERVICE_NAME, handlers
from services.shipping.context import ShippingContext, ShippingSettings
from services.shipping.provider import SimulatedCarrier
from services.shipping.service import build
from services.shipping.store import InMemoryShippingStore
from tests.unit.services import emitted


def context(**settings) -> ShippingContext:
    config = ShippingSettings(**settings)
    carrier = SimulatedCarrier(
        name=config.carrier_name,
        delivery_days=config.delivery_days,
        unserved_countries=config.unserved_countries,
        failure_rate=config.failure_rate,
        rng=random.Random(1),
    )
    return ShippingContext(InMemoryShippingStore(), carrier, config, InMemoryKeyring())


@pytest.fixture
def ctx() -> ShippingContext:
    return context()


def placed(order_id: str, country: str = "DE") -> Message:
    order = sample_order_placed(country_code=country)
    return Message.first(order, saga_type="order", saga_key=order_id, producer="test")


def charged(order_id: str) -> Message:
    event = PaymentCharged(
        payment_id="pay-1", amount_minor=3399, currency="EUR", charged_at=utc_now()
    )
    return Message.first(event, saga_type="order", saga_key=order_id, producer="payment")


def cancel(order_id: str) -> Message:
    command = ShipmentCancel(reason="order cancelled", requested_at=utc_now())
    return Message.first(command, saga_type="order", saga_key=order_id, producer="saga-coordinator")


async def ship_order(ctx: ShippingContext, order_id: str, country: str = "DE") -> list:
    assert await emitted(handlers.remember_parcel(placed(order_id, country), ctx)) == []
    return await emitted(handlers.schedule(charged(order_id), ctx))


async def test_a_paid_order_is_booked_with_the_carrier(ctx):
    [event] = await ship_order(ctx, "o1")
    assert isinstance(event, ShipmentScheduled)
    assert (event.carrier, event.country_code) == ("DHL", "DE")
    assert event.estimated_delivery is not None
    assert event.estimated_delivery > event.scheduled_at
    parcel = await ctx.store.parcel("o1")
    assert parcel.items == (
        ReservedItem(sku="SKU-RED-MUG", quantity=2),
        ReservedItem(sku="SKU-TEA-BOX", quantity=1),
    )


async def test_a_second_charge_re_emits_the_booking_and_books_nothing_more(ctx):
    [first] = await ship_order(ctx, "o1")
    [second] = await emitted(handlers.schedule(charged("o1"), ctx))
    assert second == first
    assert list(ctx.provider.bookings) == ["o1"]


async def test_an_unserved_country_fails_the_shipment(ctx):
    [event] = await ship_order(ctx, "o1", country="AQ")
    assert event == ShipmentFailed(
        reason="country_not_served", country_code="AQ", failed_at=event.failed_at
    )
    assert await emitted(handlers.schedule(charged("o1"), ctx)) == [event]


async def test_unserved_countries_are_configurable():
    ctx = context(unserved_countries="KP")
    [aq] = await ship_order(ctx, "o1", country="AQ")
    [kp] = await ship_order(ctx, "o2", country="KP")
    assert isinstance(aq, ShipmentScheduled)
    assert isinstance(kp, ShipmentFailed)


async def test_a_charge_before_the_order_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"order\.placed not seen"):
        await emitted(handlers.schedule(charged("o1"), ctx))


async def test_carrier_failure_rate_makes_bookings_transient_failures():
    ctx = context(failure_rate=1.0)
    with pytest.raises(TransientError):
        await ship_order(ctx, "o1")
    assert await ctx.store.shipment("o1") is None


async def test_cancel_cancels_the_booking_once_however_often_it_is_commanded(ctx):
    [booked] = await ship_order(ctx, "o1")
    acks = [await emitted(handlers.cancel(cancel("o1"), ctx)) for _ in range(3)]
    assert {ack[0].shipment_id for ack in acks} == {booked.shipment_id}
    assert all(isinstance(ack[0], ShipmentCancelled) for ack in acks)
    assert ctx.provider.cancelled == {booked.shipment_id}


async def test_cancel_with_nothing_booked_is_acknowledged_and_blocks_a_late_booking(ctx):
    await emitted(handlers.remember_parcel(placed("o1"), ctx))
    [ack] = await emitted(handlers.cancel(cancel("o1"), ctx))
    assert ack.shipment_id is None
    assert await emitted(handlers.schedule(charged("o1"), ctx)) == []
    assert ctx.provider.bookings == {}


async def test_cancel_of_a_failed_shipment_is_acknowledged_without_id(ctx):
    await ship_order(ctx, "o1", country="AQ")
    [ack] = await emitted(handlers.cancel(cancel("o1"), ctx))
    assert ack.shipment_id is None
    assert ctx.provider.cancelled == set()


async def test_the_address_is_never_logged(ctx, caplog):
    caplog.set_level(logging.DEBUG)
    await ship_order(ctx, "o1")
    await emitted(handlers.cancel(cancel("o1"), ctx))
    assert caplog.records
    assert "Analytical Way" not in caplog.text
    assert "Ada" not in caplog.text


def test_settings_read_a_comma_separated_country_list(monkeypatch):
    assert ShippingSettings().unserved_countries == {"AQ"}
    monkeypatch.setenv("CHOREO_SHIPPING_UNSERVED_COUNTRIES", "aq, KP")
    monkeypatch.setenv("CHOREO_SHIPPING_FAILURE_RATE", "0.5")
    settings = ShippingSettings()
    assert settings.unserved_countries == {"AQ", "KP"}
    assert settings.failure_rate == 0.5


def test_build_declares_the_service():
    service = build(get_settings(), ShippingSettings())
    assert service.name == SERVICE_NAME == "shipping"
    assert service.router.event_types == [
        "order.placed",
        "payment.charged",
        "pickup.cancel",
        "return.approved",
        "return.requested",
        "shipment.cancel",
    ]


async def sealed_placed(ctx: ShippingContext, order_id: str) -> Message:
    order = await seal_personal_data(sample_order_placed(), ctx.keyring)
    return Message.first(order, saga_type="order", saga_key=order_id, producer="test")


async def test_a_sealed_address_is_kept_sealed_and_opened_for_the_carrier(ctx):
    await emitted(handlers.remember_parcel(await sealed_placed(ctx, "o1"), ctx))
    parcel = await ctx.store.parcel("o1")
    assert is_sealed(parcel.address.recipient)
    assert is_sealed(parcel.address.line1)
    [event] = await emitted(handlers.schedule(charged("o1"), ctx))
    assert isinstance(event, ShipmentScheduled)
    opened = await handlers.opened_address(parcel.address, ctx.keyring)
    assert opened == sample_order_placed().shipping_address


async def test_a_forgotten_customers_order_is_not_booked_and_fails_as_refused(ctx):
    message = await sealed_placed(ctx, "o1")
    await emitted(handlers.remember_parcel(message, ctx))
    await ctx.keyring.forget(message.event.customer_id)
    [event] = await emitted(handlers.schedule(charged("o1"), ctx))
    assert event == ShipmentFailed(
        reason=handlers.ADDRESS_ERASED, country_code="DE", failed_at=event.failed_at
    )
    assert list(ctx.provider.bookings) == []
