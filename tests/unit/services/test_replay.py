"""Replay providers (``services/<name>/replay.py``): a handler run again with its service's
replay provider, at the instant the live run processed the message and with what it emitted,
records and emits exactly what it did live, without reaching the real provider; where the log
has no answer it raises the retryable :class:`ReplayDivergence`."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest

from contracts.catalog import (
    OrderApproved,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefund,
    PaymentRefunded,
    ShipmentCancel,
    ShipmentFailed,
    ShipmentScheduled,
)
from contracts.samples import sample_order_placed
from events.errors import TransientError
from events.model import Event, Message, frozen_clock, utc_now
from events.personal_data import InMemoryKeyring
from events.replay.providers import ReplayDivergence, replaying
from events.retries import is_retryable
from events.settings import get_settings
from services.crm import handlers as crm
from services.crm.context import CrmContext, CrmSettings
from services.crm.provider import CrmSystem, SimulatedCrm
from services.crm.replay import ReplayCrm
from services.crm.store import InMemoryCrmStore
from services.email import handlers as email
from services.email.context import EmailContext, EmailSettings
from services.email.provider import Mailer, SimulatedMailer
from services.email.replay import ReplayMailer
from services.email.store import InMemoryEmailStore
from services.inventory import handlers as inventory
from services.inventory.context import InventoryContext, InventorySettings
from services.inventory.provider import JsonStockFeed
from services.inventory.return_store import InMemoryReturnStore
from services.inventory.store import InMemoryInventoryStore
from services.payment import handlers as payment
from services.payment.context import PaymentContext, PaymentSettings
from services.payment.provider import PaymentGateway, SimulatedGateway
from services.payment.replay import ReplayGateway
from services.payment.store import InMemoryPaymentStore
from services.shipping import handlers as shipping
from services.shipping.context import ShippingContext, ShippingSettings
from services.shipping.provider import Carrier, SimulatedCarrier
from services.shipping.replay import ReplayCarrier
from services.shipping.store import InMemoryShippingStore
from tests.unit.services import emitted

Handler = Callable[[Message[Any], Any], Awaitable[Any]]


async def live(handler: Handler, message: Message[Any], ctx: Any) -> tuple[list[Any], datetime]:
    """As a delivery runs it: at one instant. Returns what it emits and that instant."""
    with frozen_clock() as at:
        return await emitted(handler(message, ctx)), at


async def replayed(
    handler: Handler, message: Message[Any], ctx: Any, recorded: list[Event], at: datetime
) -> list[Any]:
    """As the replay driver runs it: at the live instant, with what the live run emitted."""
    with frozen_clock(at), replaying(message, recorded):
        return await emitted(handler(message, ctx))


def first(event: Event, order_id: str = "o1", producer: str = "test") -> Message[Any]:
    return Message.first(event, saga_type="order", saga_key=order_id, producer=producer)


def test_replay_providers_implement_the_protocols():
    providers: tuple[PaymentGateway, Carrier, Mailer, CrmSystem] = (
        ReplayGateway(),
        ReplayCarrier(),
        ReplayMailer(),
        ReplayCrm(),
    )
    assert len(providers) == 4


# --------------------------------------------------------------------------- payment


def payment_context(provider: PaymentGateway) -> PaymentContext:
    return PaymentContext(InMemoryPaymentStore(), provider, PaymentSettings(flaky_failures=2))


@pytest.mark.parametrize("token", ["tok_visa", "tok_declined", "tok_flaky"])
async def test_a_replayed_charge_records_and_emits_what_the_live_gateway_answered(token):
    placed = first(sample_order_placed(payment_token=token))
    approved = first(OrderApproved(approved_by="policy:auto", approved_at=utc_now()))
    gateway = SimulatedGateway(flaky_failures=2, rng=random.Random(1))
    before = payment_context(gateway)
    await live(payment.remember_intent, placed, before)
    for _ in range(2 if token == "tok_flaky" else 0):  # the runtime's retries
        with pytest.raises(TransientError):
            await live(payment.charge, approved, before)
    outputs, at = await live(payment.charge, approved, before)

    after = payment_context(ReplayGateway())
    await replayed(payment.remember_intent, placed, after, [], placed.envelope.occurred_at)
    assert await replayed(payment.charge, approved, after, outputs, at) == outputs
    assert await after.store.payment("o1") == await before.store.payment("o1")
    assert isinstance(outputs[0], PaymentDeclined if token == "tok_declined" else PaymentCharged)
    if token == "tok_flaky":
        assert outputs[0].attempt == 3


@pytest.mark.parametrize("charged", [True, False])
async def test_a_replayed_refund_gives_back_what_the_live_one_did(charged):
    placed = first(sample_order_placed())
    approved = first(OrderApproved(approved_by="policy:auto", approved_at=utc_now()))
    refund = first(
        PaymentRefund(amount_minor=3399, currency="EUR", reason="x", requested_at=utc_now())
    )
    before = payment_context(SimulatedGateway())
    after = payment_context(ReplayGateway())
    await live(payment.remember_intent, placed, before)
    await replayed(payment.remember_intent, placed, after, [], utc_now())
    if charged:
        charge, charged_at = await live(payment.charge, approved, before)
        await replayed(payment.charge, approved, after, charge, charged_at)
    outputs, at = await live(payment.refund, refund, before)

    assert await replayed(payment.refund, refund, after, outputs, at) == outputs
    assert await after.store.payment("o1") == await before.store.payment("o1")
    [ack] = outputs
    assert isinstance(ack, PaymentRefunded)
    assert (ack.payment_id == payment.NO_PAYMENT) is not charged


async def test_a_charge_the_log_does_not_show_is_a_retryable_divergence():
    ctx = payment_context(ReplayGateway())
    placed = first(sample_order_placed())
    approved = first(OrderApproved(approved_by="policy:auto", approved_at=utc_now()))
    await replayed(payment.remember_intent, placed, ctx, [], utc_now())
    with pytest.raises(ReplayDivergence) as caught:
        await replayed(payment.charge, approved, ctx, [], utc_now())
    assert is_retryable(caught.value)
    assert await ctx.store.payment("o1") is None
    with pytest.raises(ReplayDivergence):  # outside a replay there is nothing to answer from
        await ReplayGateway().charge(
            idempotency_key="o1", amount_minor=1, currency="EUR", token="t"
        )


# --------------------------------------------------------------------------- shipping


def shipping_context(provider: Carrier) -> ShippingContext:
    return ShippingContext(InMemoryShippingStore(), provider, ShippingSettings(), InMemoryKeyring())


@pytest.mark.parametrize("country", ["DE", "AQ"])
async def test_a_replayed_booking_records_what_the_live_carrier_answered(country):
    placed = first(sample_order_placed(country_code=country))
    charged = first(
        PaymentCharged(payment_id="pay-1", amount_minor=3399, currency="EUR", charged_at=utc_now())
    )
    cancel = first(ShipmentCancel(reason="order cancelled", requested_at=utc_now()))
    carrier = SimulatedCarrier()
    before, after = shipping_context(carrier), shipping_context(ReplayCarrier())
    for ctx in (before, after):
        await replayed(shipping.remember_parcel, placed, ctx, [], utc_now())
    outputs, at = await live(shipping.schedule, charged, before)
    assert await replayed(shipping.schedule, charged, after, outputs, at) == outputs
    assert isinstance(outputs[0], ShipmentScheduled if country == "DE" else ShipmentFailed)

    cancelled, at = await live(shipping.cancel, cancel, before)
    assert await replayed(shipping.cancel, cancel, after, cancelled, at) == cancelled
    assert await after.store.shipment("o1") == await before.store.shipment("o1")
    assert len(carrier.cancelled) == (1 if country == "DE" else 0)  # only the live one


# --------------------------------------------------------------------------- email


def email_context(provider: Mailer) -> EmailContext:
    return EmailContext(InMemoryEmailStore(), provider, EmailSettings(), InMemoryKeyring())


async def test_a_replayed_mail_has_the_live_message_id_and_is_not_sent():
    placed = first(sample_order_placed())
    booked = first(
        ShipmentScheduled(
            shipment_id="shp-1", carrier="DHL", country_code="DE", scheduled_at=utc_now()
        )
    )
    mailer = SimulatedMailer()
    before, after = email_context(mailer), email_context(ReplayMailer())
    for ctx in (before, after):
        await replayed(email.remember_recipient, placed, ctx, [], utc_now())
    outputs, at = await live(email.send_confirmation, booked, before)
    assert await replayed(email.send_confirmation, booked, after, outputs, at) == outputs
    assert await after.store.sent("o1") == await before.store.sent("o1")
    assert len(mailer.sent) == 1

    unsent = email_context(ReplayMailer())
    await replayed(email.remember_recipient, placed, unsent, [], utc_now())
    with pytest.raises(ReplayDivergence):  # a mail the live run did not send
        await replayed(email.send_confirmation, booked, unsent, [], at)


# --------------------------------------------------------------------------- crm, inventory


async def test_a_replayed_crm_update_pushes_nothing_and_emits_the_same_profile():
    placed = first(sample_order_placed())
    booked = first(
        ShipmentScheduled(
            shipment_id="shp-1", carrier="DHL", country_code="DE", scheduled_at=utc_now()
        )
    )
    crm_system = SimulatedCrm()
    before = CrmContext(InMemoryCrmStore(), crm_system, CrmSettings())
    after = CrmContext(InMemoryCrmStore(), ReplayCrm(), CrmSettings())
    for ctx in (before, after):
        await replayed(crm.remember_order, placed, ctx, [], utc_now())
    outputs, at = await live(crm.count_order, booked, before)
    assert await replayed(crm.count_order, booked, after, outputs, at) == outputs
    assert len(crm_system.profiles) == 1


async def test_inventory_decides_the_same_again_from_the_same_message():
    """No provider to replay: the reservation id derives from the message, and shipping is
    stamped with the booking's own time (the handler emits nothing, the clock is unknown)."""
    placed = first(sample_order_placed())
    booked = first(
        ShipmentScheduled(
            shipment_id="shp-1", carrier="DHL", country_code="DE", scheduled_at=utc_now()
        )
    )
    stock = {"SKU-RED-MUG": 10, "SKU-TEA-BOX": 10}
    feed = JsonStockFeed(InventorySettings().seed_file)
    contexts = [
        InventoryContext(
            InMemoryInventoryStore(stock), feed, InventorySettings(), InMemoryReturnStore()
        )
        for _ in range(2)
    ]
    outputs, at = await live(inventory.reserve, placed, contexts[0])
    assert await replayed(inventory.reserve, placed, contexts[1], outputs, at) == outputs
    assert outputs[0].reservation_id == f"res-{placed.envelope.event_id.hex[:16]}"
    await live(inventory.ship, booked, contexts[0])
    await replayed(inventory.ship, booked, contexts[1], [], booked.envelope.occurred_at)
    before, after = [await ctx.store.reservation("o1") for ctx in contexts]
    assert after == before
    assert before is not None
    assert before.status == "shipped"


def test_every_process_can_be_built_for_a_replay():
    from choreo.replay import build_for_replay

    for name in ("inventory", "payment", "shipping", "crm", "email", "coordinator"):
        assert build_for_replay(name, get_settings()).router.event_types
