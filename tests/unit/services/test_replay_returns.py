"""Replay of the returns handlers: run again with the service's replay provider, at the live
instant and with what the live run emitted, each records and emits exactly what it did live,
without reaching the carrier, the gateway or the mailer (see ``test_replay.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.catalog import OrderApproved
from contracts.parts import ReservedItem
from contracts.return_samples import sample_return_requested
from contracts.returns import (
    InventoryRestocked,
    PaymentReturnRefunded,
    PickupCancel,
    PickupFailed,
    PickupScheduled,
    ReturnApproved,
)
from contracts.samples import sample_order_placed
from events.model import Event, Message, utc_now
from events.personal_data import InMemoryKeyring
from events.replay.providers import ReplayDivergence
from services.email import returns as email
from services.email.context import EmailContext, EmailSettings
from services.email.provider import SimulatedMailer
from services.email.replay import ReplayMailer
from services.email.store import InMemoryEmailStore
from services.inventory import returns as inventory
from services.inventory.context import InventoryContext, InventorySettings
from services.inventory.provider import JsonStockFeed
from services.inventory.return_store import InMemoryReturnStore
from services.inventory.store import InMemoryInventoryStore
from services.payment import handlers as payment_orders
from services.payment import returns as payment
from services.payment.provider import SimulatedGateway
from services.payment.replay import ReplayGateway
from services.shipping import returns as shipping
from services.shipping.provider import SimulatedCarrier
from services.shipping.replay import ReplayCarrier
from tests.unit.services.test_replay import (
    first,
    live,
    payment_context,
    replayed,
    shipping_context,
)


def of_return(event: Event, return_id: str = "r1") -> Message[Any]:
    return Message.first(event, saga_type="return", saga_key=return_id, producer="test")


@pytest.mark.parametrize("country", ["DE", "AQ"])
async def test_a_replayed_pickup_records_what_the_live_carrier_answered(country):
    requested = of_return(sample_return_requested("o1", country_code=country))
    approved = of_return(ReturnApproved(approved_by="policy:auto", approved_at=utc_now()))
    cancel = of_return(PickupCancel(reason="return cancelled", requested_at=utc_now()))
    carrier = SimulatedCarrier()
    before, after = shipping_context(carrier), shipping_context(ReplayCarrier())
    for ctx in (before, after):
        await replayed(shipping.remember_pickup, requested, ctx, [], utc_now())
    outputs, at = await live(shipping.schedule_pickup, approved, before)
    assert await replayed(shipping.schedule_pickup, approved, after, outputs, at) == outputs
    assert isinstance(outputs[0], PickupScheduled if country == "DE" else PickupFailed)

    cancelled, at = await live(shipping.cancel_pickup, cancel, before)
    assert await replayed(shipping.cancel_pickup, cancel, after, cancelled, at) == cancelled
    assert await after.store.pickup("r1") == await before.store.pickup("r1")
    assert len(carrier.cancelled_pickups) == (1 if country == "DE" else 0)  # only the live one


async def test_a_replayed_return_refund_gives_back_what_the_live_one_did():
    placed = first(sample_order_placed())
    approved = first(OrderApproved(approved_by="policy:auto", approved_at=utc_now()))
    requested = of_return(sample_return_requested("o1"))
    restocked = of_return(
        InventoryRestocked(
            restock_id="rst-1",
            items=(ReservedItem(sku="SKU-RED-MUG", quantity=1),),
            restocked_at=utc_now(),
        )
    )
    before = payment_context(SimulatedGateway())
    after = payment_context(ReplayGateway())
    await live(payment_orders.remember_intent, placed, before)
    await replayed(payment_orders.remember_intent, placed, after, [], utc_now())
    charge, charged_at = await live(payment_orders.charge, approved, before)
    await replayed(payment_orders.charge, approved, after, charge, charged_at)
    for ctx in (before, after):
        await replayed(payment.remember_return, requested, ctx, [], utc_now())
    outputs, at = await live(payment.refund_return, restocked, before)
    assert await replayed(payment.refund_return, restocked, after, outputs, at) == outputs
    assert await after.store.return_refund("r1") == await before.store.return_refund("r1")
    assert isinstance(outputs[0], PaymentReturnRefunded)
    with pytest.raises(ReplayDivergence):  # outside a replay there is nothing to answer from
        await ReplayGateway().refund_part(
            idempotency_key="r1", payment_id="pay-1", amount_minor=1, currency="EUR"
        )


async def test_inventory_restocks_the_same_again_from_the_same_message():
    """No provider to replay: the restock id derives from the message."""
    requested = of_return(sample_return_requested("o1"))
    picked_up = of_return(
        PickupScheduled(pickup_id="pck-1", carrier="DHL", country_code="DE", scheduled_at=utc_now())
    )
    feed = JsonStockFeed(InventorySettings().seed_file)
    contexts = [
        InventoryContext(
            InMemoryInventoryStore({"SKU-RED-MUG": 3}),
            feed,
            InventorySettings(),
            InMemoryReturnStore(),
        )
        for _ in range(2)
    ]
    for ctx in contexts:
        await replayed(inventory.remember_return, requested, ctx, [], utc_now())
    outputs, at = await live(inventory.inspect, picked_up, contexts[0])
    assert await replayed(inventory.inspect, picked_up, contexts[1], outputs, at) == outputs
    assert outputs[0].restock_id == f"rst-{picked_up.envelope.event_id.hex[:16]}"
    before, after = [await ctx.returns.restock("r1") for ctx in contexts]
    assert after == before
    levels = [await ctx.store.stock_levels() for ctx in contexts]
    assert levels[0] == levels[1]


async def test_a_replayed_return_confirmation_has_the_live_message_id_and_is_not_sent():
    requested = of_return(sample_return_requested("o1"))
    refunded = of_return(
        PaymentReturnRefunded(
            refund_id="rfd-1",
            payment_id="pay-1",
            amount_minor=1250,
            currency="EUR",
            refunded_at=utc_now(),
        )
    )
    mailer = SimulatedMailer()
    before = EmailContext(InMemoryEmailStore(), mailer, EmailSettings(), InMemoryKeyring())
    after = EmailContext(InMemoryEmailStore(), ReplayMailer(), EmailSettings(), InMemoryKeyring())
    for ctx in (before, after):
        await replayed(email.remember_return_recipient, requested, ctx, [], utc_now())
    outputs, at = await live(email.send_return_confirmation, refunded, before)
    assert await replayed(email.send_return_confirmation, refunded, after, outputs, at) == outputs
    assert await after.store.sent("r1") == await before.store.sent("r1")
    assert len(mailer.sent) == 1
