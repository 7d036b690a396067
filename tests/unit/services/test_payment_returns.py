"""Payment's returns handlers on the in-memory store and the simulated gateway: partial refunds
from the order's charge, at most once per return, never more than was charged."""

from __future__ import annotations

import random

import pytest

from contracts.parts import ReservedItem
from contracts.return_samples import sample_return_requested
from contracts.returns import InventoryRestocked, PaymentReturnRefundDeclined, PaymentReturnRefunded
from events.errors import TransientError
from events.model import Message, utc_now
from services.payment import handlers, returns
from services.payment.context import PaymentContext, PaymentSettings
from services.payment.provider import SimulatedGateway
from services.payment.store import InMemoryPaymentStore
from tests.unit.services import emitted
from tests.unit.services.test_payment import TOTAL, charge_order, gateway, refund

MUG = 1250


def context(**settings) -> PaymentContext:
    config = PaymentSettings(**settings)
    simulated = SimulatedGateway(failure_rate=config.failure_rate, rng=random.Random(1))
    return PaymentContext(InMemoryPaymentStore(), simulated, config)


@pytest.fixture
def ctx() -> PaymentContext:
    return context()


def requested(return_id: str, order_id: str, mugs: int = 1) -> Message:
    event = sample_return_requested(order_id, items=(("SKU-RED-MUG", mugs, MUG),))
    return Message.first(event, saga_type="return", saga_key=return_id, producer="test")


def restocked(return_id: str) -> Message:
    event = InventoryRestocked(
        restock_id="rst-1",
        items=(ReservedItem(sku="SKU-RED-MUG", quantity=1),),
        restocked_at=utc_now(),
    )
    return Message.first(event, saga_type="return", saga_key=return_id, producer="inventory")


async def refund_return(ctx: PaymentContext, return_id: str, order_id: str, mugs: int = 1) -> list:
    assert await emitted(returns.remember_return(requested(return_id, order_id, mugs), ctx)) == []
    return await emitted(returns.refund_return(restocked(return_id), ctx))


async def test_a_restocked_return_is_refunded_from_the_orders_charge(ctx):
    [charged] = await charge_order(ctx, "o1")
    [event] = await refund_return(ctx, "r1", "o1")
    assert isinstance(event, PaymentReturnRefunded)
    assert event.payment_id == charged.payment_id
    assert (event.amount_minor, event.currency) == (MUG, "EUR")
    assert event.refund_id.startswith("rfd-")
    assert list(gateway(ctx).part_refunds) == ["r1"]
    # The order's own books are untouched: a return is no compensation.
    assert (await ctx.store.charges())["o1"].refund_count == 0


async def test_a_repeated_restock_re_emits_the_refund_and_refunds_once(ctx):
    await charge_order(ctx, "o1")
    [first] = await refund_return(ctx, "r1", "o1")
    [again] = await emitted(returns.refund_return(restocked("r1"), ctx))
    assert again == first
    assert len(gateway(ctx).part_refunds) == 1
    assert await ctx.store.returned_minor("o1") == MUG


async def test_returns_of_one_order_share_its_charge(ctx):
    await charge_order(ctx, "o1")
    [one] = await refund_return(ctx, "r1", "o1")
    [two] = await refund_return(ctx, "r2", "o1")
    [three] = await refund_return(ctx, "r3", "o1")
    assert isinstance(one, PaymentReturnRefunded)
    assert isinstance(two, PaymentReturnRefunded)
    assert three == PaymentReturnRefundDeclined(
        reason="exceeds_charge", refundable_minor=TOTAL - 2 * MUG, declined_at=three.declined_at
    )
    assert await ctx.store.returned_minor("o1") == 2 * MUG


async def test_a_return_worth_more_than_the_charge_is_declined(ctx):
    await charge_order(ctx, "o1")
    [event] = await refund_return(ctx, "r1", "o1", mugs=3)
    assert isinstance(event, PaymentReturnRefundDeclined)
    assert (event.reason, event.refundable_minor) == ("exceeds_charge", TOTAL)
    assert gateway(ctx).part_refunds == {}
    [again] = await emitted(returns.refund_return(restocked("r1"), ctx))
    assert again == event


async def test_an_order_refunded_by_its_compensation_has_nothing_left(ctx):
    await charge_order(ctx, "o1")
    await emitted(handlers.refund(refund("o1"), ctx))
    [event] = await refund_return(ctx, "r1", "o1")
    assert (event.reason, event.refundable_minor) == ("exceeds_charge", 0)


async def test_a_declined_order_has_no_charge_to_refund(ctx):
    await charge_order(ctx, "o1", token="tok_declined")
    [event] = await refund_return(ctx, "r1", "o1")
    assert event == PaymentReturnRefundDeclined(
        reason="no_charge", refundable_minor=0, declined_at=event.declined_at
    )


async def test_an_unknown_order_has_no_charge_to_refund(ctx):
    [event] = await refund_return(ctx, "r1", "never-placed")
    assert (event.reason, event.refundable_minor) == ("no_charge", 0)


async def test_a_refund_in_another_currency_is_declined(ctx):
    await charge_order(ctx, "o1")
    other = sample_return_requested("o1").model_copy(update={"currency": "USD"})
    message = Message.first(other, saga_type="return", saga_key="r1", producer="test")
    await emitted(returns.remember_return(message, ctx))
    [event] = await emitted(returns.refund_return(restocked("r1"), ctx))
    assert (event.reason, event.refundable_minor) == ("currency_mismatch", TOTAL)


async def test_a_restock_before_the_request_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"return\.requested not seen"):
        await emitted(returns.refund_return(restocked("r1"), ctx))


async def test_gateway_trouble_leaves_the_refund_undecided():
    ctx = context()
    await charge_order(ctx, "o1")
    gateway(ctx).failure_rate = 1.0
    with pytest.raises(TransientError):
        await refund_return(ctx, "r1", "o1")
    assert (await ctx.store.return_refund("r1")).outcome is None
    assert await ctx.store.returned_minor("o1") == 0
