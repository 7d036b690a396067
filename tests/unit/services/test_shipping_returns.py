"""Shipping's returns handlers (pickups) on the in-memory store and the simulated carrier."""

from __future__ import annotations

import logging
import random

import pytest

from contracts.parts import ReservedItem
from contracts.personal import seal_personal_data
from contracts.return_samples import sample_return_requested
from contracts.returns import (
    PickupCancel,
    PickupCancelled,
    PickupFailed,
    PickupScheduled,
    ReturnApproved,
)
from events.errors import TransientError
from events.model import Message, utc_now
from events.personal_data import InMemoryKeyring
from events.settings import get_settings
from services.shipping import returns
from services.shipping.context import ShippingContext, ShippingSettings
from services.shipping.handlers import ADDRESS_ERASED
from services.shipping.provider import SimulatedCarrier
from services.shipping.service import build
from services.shipping.store import InMemoryShippingStore
from tests.unit.services import emitted


def context(**settings) -> ShippingContext:
    config = ShippingSettings(**settings)
    carrier = SimulatedCarrier(
        name=config.carrier_name,
        unserved_countries=config.unserved_countries,
        failure_rate=config.failure_rate,
        rng=random.Random(1),
    )
    return ShippingContext(InMemoryShippingStore(), carrier, config, InMemoryKeyring())


@pytest.fixture
def ctx() -> ShippingContext:
    return context()


def requested(return_id: str, country: str = "DE") -> Message:
    event = sample_return_requested("ord-1", country_code=country)
    return Message.first(event, saga_type="return", saga_key=return_id, producer="test")


def approved(return_id: str) -> Message:
    event = ReturnApproved(approved_by="policy:auto", approved_at=utc_now())
    return Message.first(event, saga_type="return", saga_key=return_id, producer="coordinator")


def cancel(return_id: str) -> Message:
    event = PickupCancel(reason="return cancelled", requested_at=utc_now())
    return Message.first(event, saga_type="return", saga_key=return_id, producer="coordinator")


async def pick_up(ctx: ShippingContext, return_id: str, country: str = "DE") -> list:
    assert await emitted(returns.remember_pickup(requested(return_id, country), ctx)) == []
    return await emitted(returns.schedule_pickup(approved(return_id), ctx))


async def test_an_approved_return_gets_a_pickup(ctx):
    [event] = await pick_up(ctx, "r1")
    assert isinstance(event, PickupScheduled)
    assert (event.carrier, event.country_code) == ("DHL", "DE")
    assert event.pickup_id.startswith("pck-")
    parcel = await ctx.store.return_parcel("r1")
    assert parcel.items == (ReservedItem(sku="SKU-RED-MUG", quantity=1),)
    assert parcel.address.city == "Berlin"


async def test_a_second_approval_re_emits_the_pickup_and_books_nothing_more(ctx):
    [first] = await pick_up(ctx, "r1")
    [second] = await emitted(returns.schedule_pickup(approved("r1"), ctx))
    assert second == first
    assert list(ctx.provider.pickups) == ["r1"]


async def test_a_second_return_request_keeps_the_first_address(ctx):
    await emitted(returns.remember_pickup(requested("r1"), ctx))
    await emitted(returns.remember_pickup(requested("r1", country="FR"), ctx))
    parcel = await ctx.store.return_parcel("r1")
    assert parcel.address.country_code == "DE"


async def test_an_unserved_country_fails_the_pickup(ctx):
    [event] = await pick_up(ctx, "r1", country="AQ")
    assert event == PickupFailed(
        reason="country_not_served", country_code="AQ", failed_at=event.failed_at
    )
    assert await emitted(returns.schedule_pickup(approved("r1"), ctx)) == [event]


async def test_pickups_use_the_shipments_unserved_countries():
    ctx = context(unserved_countries="KP")
    [aq] = await pick_up(ctx, "r1", country="AQ")
    [kp] = await pick_up(ctx, "r2", country="KP")
    assert isinstance(aq, PickupScheduled)
    assert isinstance(kp, PickupFailed)


async def test_an_approval_before_the_request_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"return\.requested not seen"):
        await emitted(returns.schedule_pickup(approved("r1"), ctx))


async def test_carrier_trouble_leaves_no_pickup_recorded():
    ctx = context(failure_rate=1.0)
    with pytest.raises(TransientError):
        await pick_up(ctx, "r1")
    assert await ctx.store.pickup("r1") is None


async def test_cancel_cancels_the_pickup_once_however_often_it_is_commanded(ctx):
    [booked] = await pick_up(ctx, "r1")
    acks = [await emitted(returns.cancel_pickup(cancel("r1"), ctx)) for _ in range(3)]
    assert {ack[0].pickup_id for ack in acks} == {booked.pickup_id}
    assert all(isinstance(ack[0], PickupCancelled) for ack in acks)
    assert ctx.provider.cancelled_pickups == {booked.pickup_id}


async def test_cancel_with_nothing_booked_is_acknowledged_and_blocks_a_late_pickup(ctx):
    await emitted(returns.remember_pickup(requested("r1"), ctx))
    [ack] = await emitted(returns.cancel_pickup(cancel("r1"), ctx))
    assert ack.pickup_id is None
    assert await emitted(returns.schedule_pickup(approved("r1"), ctx)) == []
    assert ctx.provider.pickups == {}


async def test_cancel_of_a_failed_pickup_is_acknowledged_without_id(ctx):
    await pick_up(ctx, "r1", country="AQ")
    [ack] = await emitted(returns.cancel_pickup(cancel("r1"), ctx))
    assert ack.pickup_id is None
    assert ctx.provider.cancelled_pickups == set()


async def test_a_pickup_and_a_shipment_of_the_same_key_are_apart(ctx):
    await pick_up(ctx, "k1")
    assert await ctx.store.shipment("k1") is None
    assert ctx.provider.bookings == {}


async def test_the_pickup_address_is_never_logged(ctx, caplog):
    caplog.set_level(logging.DEBUG)
    await pick_up(ctx, "r1")
    await emitted(returns.cancel_pickup(cancel("r1"), ctx))
    assert caplog.records
    assert "Analytical Way" not in caplog.text
    assert "Ada" not in caplog.text


def test_the_service_runs_the_returns_handlers():
    service = build(get_settings(), ShippingSettings())
    assert {"return.requested", "return.approved", "pickup.cancel"} <= set(
        service.router.event_types
    )


async def test_a_sealed_pickup_address_is_opened_for_the_carrier_and_erased_fails_it(ctx):
    event = await seal_personal_data(sample_return_requested("ord-1"), ctx.keyring)
    for return_id in ("r1", "r2"):
        message = Message.first(event, saga_type="return", saga_key=return_id, producer="test")
        await emitted(returns.remember_pickup(message, ctx))
    [booked] = await emitted(returns.schedule_pickup(approved("r1"), ctx))
    assert isinstance(booked, PickupScheduled)
    await ctx.keyring.forget(event.customer_id)
    [failed] = await emitted(returns.schedule_pickup(approved("r2"), ctx))
    assert failed == PickupFailed(
        reason=ADDRESS_ERASED, country_code="DE", failed_at=failed.failed_at
    )
    assert list(ctx.provider.pickups) == ["r1"]  # the carrier never saw r2
