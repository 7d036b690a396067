"""Payment's part in the returns saga: refund the returned items from the order's charge.

Registered on the payment router (:data:`services.payment.handlers.router`); the service
definition imports this module so the process runs them. Messages of a return are keyed by the
return id (``message.saga_key``); the order whose charge pays the refund is named by
``return.requested``. A refund locks that order, as the charge and the order's own refund do, so
that concurrent returns of one order (and its compensation) see each other's refunds and never
give back more than was charged. Money moves at most once per return: the store's outcome is
checked first, and the gateway is called with the return id as idempotency key.
"""

from __future__ import annotations

import logging

from contracts.returns import (
    InventoryRestocked,
    PaymentReturnRefundDeclined,
    PaymentReturnRefunded,
    ReturnRequested,
)
from events.errors import NotReadyError
from events.model import Event, Message, utc_now
from events.providers import within
from services.payment.context import PaymentContext
from services.payment.handlers import router
from services.payment.store import ReturnRefund

log = logging.getLogger("choreo.payment")

__all__ = ["router"]

NO_CHARGE = "no_charge"
"""Declined: the order was never charged (declined, or refunded before it was)."""
EXCEEDS_CHARGE = "exceeds_charge"
"""Declined: the refund is more than what is left of the charge."""
CURRENCY_MISMATCH = "currency_mismatch"
"""Declined: the return asks for another currency than the order was charged in."""


def _refund_outcome(refund: ReturnRefund) -> list[Event]:
    """The event that tells a decided refund (sent again on a repeated restock)."""
    assert refund.decided_at is not None
    if refund.outcome == "refunded":
        assert refund.refund_id is not None
        assert refund.payment_id is not None
        return [
            PaymentReturnRefunded(
                refund_id=refund.refund_id,
                payment_id=refund.payment_id,
                amount_minor=refund.amount_minor,
                currency=refund.currency,
                refunded_at=refund.decided_at,
            )
        ]
    return [
        PaymentReturnRefundDeclined(
            reason=refund.reason or NO_CHARGE,
            refundable_minor=refund.refundable_minor or 0,
            declined_at=refund.decided_at,
        )
    ]


@router.on(ReturnRequested)
async def remember_return(message: Message[ReturnRequested], ctx: PaymentContext) -> list[Event]:
    """Keep which order pays the return back, and how much."""
    requested = message.event
    await ctx.store.save_return_refund(
        ReturnRefund(
            message.saga_key, requested.order_id, requested.refund_minor, requested.currency
        )
    )
    return []


@router.on(InventoryRestocked, provider="gateway")
async def refund_return(message: Message[InventoryRestocked], ctx: PaymentContext) -> list[Event]:
    """Refund the restocked return from its order's charge once, or decline it."""
    return_id = message.saga_key
    request = await ctx.store.return_refund(return_id)
    if request is None:
        raise NotReadyError(f"return {return_id}: return.requested not seen yet, no amount")
    order_id = request.order_id
    await ctx.store.lock_order(order_id)
    request = await ctx.store.return_refund(return_id)  # decided meanwhile, under the lock?
    assert request is not None
    if request.outcome is not None:
        return _refund_outcome(request)
    payment = await ctx.store.payment(order_id)
    if payment is None or payment.outcome != "charged" or payment.payment_id is None:
        log.info("return %s: order %s has no charge to refund from", return_id, order_id)
        return await _decline(ctx, request, NO_CHARGE, 0)
    # What the order's compensation (all of it) and its earlier returns gave back already.
    given_back = (payment.amount_minor if payment.refund_count else 0) + (
        await ctx.store.returned_minor(order_id)
    )
    refundable = max(payment.amount_minor - given_back, 0)
    if request.currency != payment.currency:
        return await _decline(ctx, request, CURRENCY_MISMATCH, refundable)
    if request.amount_minor > refundable:
        log.info("return %s: %d exceeds the %d left", return_id, request.amount_minor, refundable)
        return await _decline(ctx, request, EXCEEDS_CHARGE, refundable)
    refunded = await within(
        ctx.provider.refund_part(
            idempotency_key=return_id,
            payment_id=payment.payment_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
        ),
        ctx.config.gateway_timeout_s,
        "the payment gateway (return refund)",
    )
    log.info("return %s: refunded %d as %s", return_id, refunded.amount_minor, refunded.refund_id)
    decided = ReturnRefund(
        return_id,
        order_id,
        refunded.amount_minor,
        refunded.currency,
        "refunded",
        refunded.refund_id,
        refunded.payment_id,
        refundable_minor=refundable - refunded.amount_minor,
        decided_at=utc_now(),
    )
    return _refund_outcome(await ctx.store.record_return_refund(decided))


async def _decline(
    ctx: PaymentContext, request: ReturnRefund, reason: str, refundable: int
) -> list[Event]:
    """Record and tell that the return's refund is declined."""
    decided = ReturnRefund(
        request.return_id,
        request.order_id,
        request.amount_minor,
        request.currency,
        "declined",
        reason=reason,
        refundable_minor=refundable,
        decided_at=utc_now(),
    )
    return _refund_outcome(await ctx.store.record_return_refund(decided))
