"""Shipping's part in the returns saga: remember where to collect, book a pickup, cancel it.

Registered on the shipping router (:data:`services.shipping.handlers.router`); the service
definition imports this module so the process runs them. Messages of a return are keyed by the
return id (``message.saga_key``). ``return.approved`` (return topic) and ``pickup.cancel`` (pickup
topic) may be processed at the same time, so both lock the return first, as the shipment
handlers lock the order. The pickup address is personal data and is never logged; it arrives
sealed and is opened only to book (a forgotten customer's pickup fails as a refused one).
"""

from __future__ import annotations

import logging

from contracts.parts import ReservedItem
from contracts.returns import (
    PickupCancel,
    PickupCancelled,
    PickupFailed,
    PickupScheduled,
    ReturnApproved,
    ReturnRequested,
)
from events.errors import NotReadyError
from events.model import Event, Message, utc_now
from events.providers import within
from services.shipping.context import ShippingContext
from services.shipping.handlers import book_with_address, router
from services.shipping.provider import Refused
from services.shipping.store import Pickup, ReturnParcel

log = logging.getLogger("choreo.shipping")

__all__ = ["router"]


def _pickup_outcome(pickup: Pickup) -> list[Event]:
    """The event that tells a recorded pickup or refusal (sent again on a repeated approval)."""
    if (
        pickup.outcome == "scheduled"
        and pickup.pickup_id is not None
        and pickup.carrier is not None
        and pickup.country_code is not None
    ):
        return [
            PickupScheduled(
                pickup_id=pickup.pickup_id,
                carrier=pickup.carrier,
                country_code=pickup.country_code,
                scheduled_at=pickup.decided_at,
            )
        ]
    if pickup.outcome == "failed" and pickup.country_code is not None:
        return [
            PickupFailed(
                reason=pickup.reason or "not collected",
                country_code=pickup.country_code,
                failed_at=pickup.decided_at,
            )
        ]
    return []


@router.on(ReturnRequested)
async def remember_pickup(message: Message[ReturnRequested], ctx: ShippingContext) -> list[Event]:
    """Keep where the returned items are collected and what they are."""
    requested = message.event
    items = tuple(ReservedItem(sku=i.sku, quantity=i.quantity) for i in requested.items)
    await ctx.store.save_return_parcel(
        ReturnParcel(message.saga_key, requested.pickup_address, items)
    )
    return []


@router.on(ReturnApproved, provider="carrier")
async def schedule_pickup(message: Message[ReturnApproved], ctx: ShippingContext) -> list[Event]:
    """Book a collection for the approved return once; a repeat re-emits the first outcome."""
    return_id = message.saga_key
    await ctx.store.lock_order(return_id)
    existing = await ctx.store.pickup(return_id)
    if existing is not None and existing.cancelled_at is not None:
        # Compensated already (the cancel came first or the saga is over): never book now.
        log.info("return %s is closed by a cancel; no pickup", return_id)
        return []
    if existing is not None:
        return _pickup_outcome(existing)
    parcel = await ctx.store.return_parcel(return_id)
    if parcel is None:
        raise NotReadyError(f"return {return_id}: return.requested not seen yet, no address")
    answer = await book_with_address(
        parcel.address,
        ctx.keyring,
        lambda address: ctx.provider.book_pickup(
            reference=return_id, address=address, items=parcel.items
        ),
        ctx.config.carrier_timeout_s,
        "the carrier (pickup)",
    )
    now = utc_now()
    country = parcel.address.country_code
    if isinstance(answer, Refused):
        log.info("return %s: no pickup in %s (%s)", return_id, country, answer.reason)
        pickup = Pickup(return_id, "failed", now, country_code=country, reason=answer.reason)
    else:
        log.info("return %s: pickup %s by %s", return_id, answer.pickup_id, answer.carrier)
        pickup = Pickup(return_id, "scheduled", now, answer.pickup_id, answer.carrier, country)
    return _pickup_outcome(await ctx.store.record_pickup(pickup))


@router.on(PickupCancel, provider="carrier")
async def cancel_pickup(message: Message[PickupCancel], ctx: ShippingContext) -> list[Event]:
    """Cancel the return's pickup if there is one; always acknowledge."""
    return_id = message.saga_key
    await ctx.store.lock_order(return_id)
    existing = await ctx.store.pickup(return_id)
    if (
        existing is not None
        and existing.outcome == "scheduled"
        and existing.pickup_id is not None
        and existing.cancelled_at is None
    ):
        await within(
            ctx.provider.cancel_pickup(pickup_id=existing.pickup_id),
            ctx.config.carrier_timeout_s,
            "the carrier (pickup cancellation)",
        )
    pickup = await ctx.store.record_pickup_cancelled(return_id, utc_now())
    assert pickup.cancelled_at is not None
    log.info(
        "return %s: pickup %s cancelled (%s)", return_id, pickup.pickup_id, message.event.reason
    )
    return [PickupCancelled(pickup_id=pickup.pickup_id, cancelled_at=pickup.cancelled_at)]
