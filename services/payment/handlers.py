"""Payment handlers: remember the intent, charge on approval, refund on command.

``order.approved`` (order topic) and ``payment.refund`` (payment topic) may be processed at the
same time, so both lock the order first: a refund waits for a charge in flight and then sees
it. Money moves at most once per order, three times over: the store's outcome is checked first,
the gateway is called with the order id as idempotency key, and the table refuses a second
refund.
"""

from __future__ import annotations

import logging

from contracts.catalog import (
    CATALOG,
    OrderApproved,
    OrderPlaced,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefund,
    PaymentRefunded,
)
from events.errors import NotReadyError, PermanentError
from events.model import Event, Message, utc_now
from events.providers import within
from events.router import Router
from services.payment import SERVICE_NAME
from services.payment.context import PaymentContext
from services.payment.provider import Declined
from services.payment.store import Intent, Payment

log = logging.getLogger("choreo.payment")

NO_PAYMENT = "none"
"""``payment.refunded.payment_id`` when there was no charge to refund."""

router: Router[PaymentContext] = Router(SERVICE_NAME, CATALOG)


def _outcome(payment: Payment) -> list[Event]:
    """The event that tells a recorded charge or decline (sent again on a repeated approval)."""
    if payment.outcome == "charged" and payment.payment_id is not None:
        return [
            PaymentCharged(
                payment_id=payment.payment_id,
                amount_minor=payment.amount_minor,
                currency=payment.currency,
                charged_at=payment.decided_at,
                attempt=payment.attempt,
            )
        ]
    if payment.outcome == "declined":
        return [
            PaymentDeclined(
                reason=payment.decline_reason or "declined", declined_at=payment.decided_at
            )
        ]
    return []


def _refunded(payment: Payment) -> list[Event]:
    """The acknowledgement of a refund command, for a closed order."""
    assert payment.refunded_at is not None
    if payment.refund_count and payment.payment_id is not None:
        return [
            PaymentRefunded(
                payment_id=payment.payment_id,
                amount_minor=payment.amount_minor,
                currency=payment.currency,
                refunded_at=payment.refunded_at,
            )
        ]
    return [
        PaymentRefunded(
            payment_id=NO_PAYMENT,
            amount_minor=0,
            currency=payment.currency,
            refunded_at=payment.refunded_at,
        )
    ]


@router.on(OrderPlaced)
async def remember_intent(message: Message[OrderPlaced], ctx: PaymentContext) -> list[Event]:
    """Keep what charging the order will need."""
    placed = message.event
    await ctx.store.save_intent(
        Intent(message.saga_key, placed.total_minor, placed.currency, placed.payment_token)
    )
    return []


@router.on(OrderApproved, provider="gateway")
async def charge(message: Message[OrderApproved], ctx: PaymentContext) -> list[Event]:
    """Charge the approved order once; a repeated approval re-emits the first outcome."""
    order_id = message.saga_key
    await ctx.store.lock_order(order_id)
    existing, intent = await ctx.store.payment_and_intent(order_id)
    if existing is not None and existing.refunded_at is not None:
        # Compensated already (the refund came first or the saga is over): never charge now.
        log.info("order %s is closed by a refund; not charging", order_id)
        return []
    if existing is not None:
        return _outcome(existing)
    if intent is None:
        raise NotReadyError(f"order {order_id}: order.placed not seen yet, cannot charge")
    result = await within(
        ctx.provider.charge(
            idempotency_key=order_id,
            amount_minor=intent.amount_minor,
            currency=intent.currency,
            token=intent.token,
        ),
        ctx.config.gateway_timeout_s,
        "the payment gateway (charge)",
    )
    now = utc_now()
    if isinstance(result, Declined):
        log.info("order %s: payment declined (%s)", order_id, result.reason)
        return _outcome(
            await ctx.store.record_decline(order_id, result.reason, intent.currency, now)
        )
    log.info("order %s: charged %s as %s", order_id, result.amount_minor, result.payment_id)
    payment = await ctx.store.record_charge(
        order_id, result.payment_id, result.amount_minor, result.currency, result.attempt, now
    )
    return _outcome(payment)


@router.on(PaymentRefund, provider="gateway")
async def refund(message: Message[PaymentRefund], ctx: PaymentContext) -> list[Event]:
    """Refund the order's charge once; always acknowledge, the coordinator waits for it."""
    order_id = message.saga_key
    command = message.event
    await ctx.store.lock_order(order_id)
    existing = await ctx.store.payment(order_id)
    if existing is not None and existing.refunded_at is not None:
        return _refunded(existing)  # a retried command: acknowledge again, never refund twice
    executed = False
    if existing is None or existing.outcome == "charged":
        # Ask the gateway even with no charge on record: a charge whose answer came too late
        # (the call timed out) exists only there.
        refunded = await within(
            ctx.provider.refund(
                idempotency_key=order_id,
                payment_id=existing.payment_id if existing else None,
                amount_minor=existing.amount_minor if existing else command.amount_minor,
                currency=existing.currency if existing else command.currency,
            ),
            ctx.config.gateway_timeout_s,
            "the payment gateway (refund)",
        )
        if refunded is None and existing is not None:
            # Our books say charged, the gateway says nothing to refund: a person must look.
            raise PermanentError(f"order {order_id}: gateway has no charge {existing.payment_id}")
        if refunded is not None and existing is None:
            log.warning("order %s: refunding a charge known only to the gateway", order_id)
            await ctx.store.record_charge(
                order_id,
                refunded.payment_id,
                refunded.amount_minor,
                refunded.currency,
                1,
                utc_now(),
            )
        executed = refunded is not None
    payment = await ctx.store.record_refund(
        order_id, executed=executed, currency=command.currency, at=utc_now()
    )
    log.info("order %s: refund (%s) done, money returned: %s", order_id, command.reason, executed)
    return _refunded(payment)
