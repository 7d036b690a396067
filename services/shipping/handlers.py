"""Shipping handlers: remember the parcel, book a carrier once paid, cancel on command.

``payment.charged`` (payment topic) and ``shipment.cancel`` (shipment topic) may be processed at
the same time, so both lock the order first: a cancel waits for a booking in flight and then
cancels it. The address is personal data and is never logged.

The address's recipient and street lines arrive sealed (:mod:`events.personal_data`) and are
kept sealed; they are opened only to book the carrier. A customer forgotten before the booking
has no address any more: the booking fails as a refused one does (reason
:data:`ADDRESS_ERASED`), and the saga compensates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from contracts.catalog import (
    CATALOG,
    OrderPlaced,
    PaymentCharged,
    ShipmentCancel,
    ShipmentCancelled,
    ShipmentFailed,
    ShipmentScheduled,
)
from contracts.parts import Address, ReservedItem
from events.errors import NotReadyError
from events.model import Event, Message, utc_now
from events.personal_data import ERASED, Keyring, open_value
from events.providers import within
from events.router import Router
from services.shipping import SERVICE_NAME
from services.shipping.context import ShippingContext
from services.shipping.provider import Refused
from services.shipping.store import Parcel, Shipment

log = logging.getLogger("choreo.shipping")

router: Router[ShippingContext] = Router(SERVICE_NAME, CATALOG)

ADDRESS_ERASED = "the address is erased: the customer was forgotten"

Answer = TypeVar("Answer")


async def opened_address(address: Address, keyring: Keyring) -> Address | None:
    """``address`` with its personal lines opened; None when they are erased."""
    opened = {
        field: await open_value(keyring, value, field)
        for field, value in (
            ("recipient", address.recipient),
            ("line1", address.line1),
            ("line2", address.line2),
        )
        if value is not None
    }
    if ERASED in opened.values():
        return None
    return address.model_copy(update=opened)


async def book_with_address(
    address: Address,
    keyring: Keyring,
    book: Callable[[Address], Awaitable[Answer]],
    timeout_s: float,
    what: str,
) -> Answer | Refused:
    """The carrier's answer to ``book`` of the opened ``address`` (within ``timeout_s``);
    refused without a call when the address is erased."""
    opened = await opened_address(address, keyring)
    if opened is None:
        return Refused(ADDRESS_ERASED)
    return await within(book(opened), timeout_s, what)


def _outcome(shipment: Shipment) -> list[Event]:
    """The event that tells a recorded booking or failure (sent again on a repeated charge)."""
    if (
        shipment.outcome == "scheduled"
        and shipment.shipment_id is not None
        and shipment.carrier is not None
        and shipment.country_code is not None
    ):
        return [
            ShipmentScheduled(
                shipment_id=shipment.shipment_id,
                carrier=shipment.carrier,
                country_code=shipment.country_code,
                estimated_delivery=shipment.estimated_delivery,
                scheduled_at=shipment.decided_at,
            )
        ]
    if shipment.outcome == "failed" and shipment.country_code is not None:
        return [
            ShipmentFailed(
                reason=shipment.reason or "not shipped",
                country_code=shipment.country_code,
                failed_at=shipment.decided_at,
            )
        ]
    return []


@router.on(OrderPlaced)
async def remember_parcel(message: Message[OrderPlaced], ctx: ShippingContext) -> list[Event]:
    """Keep where the order goes and what goes in the box."""
    items = tuple(ReservedItem(sku=i.sku, quantity=i.quantity) for i in message.event.items)
    await ctx.store.save_parcel(Parcel(message.saga_key, message.event.shipping_address, items))
    return []


@router.on(PaymentCharged, provider="carrier")
async def schedule(message: Message[PaymentCharged], ctx: ShippingContext) -> list[Event]:
    """Book a carrier for the paid order once; a repeated charge re-emits the first outcome."""
    order_id = message.saga_key
    await ctx.store.lock_order(order_id)
    existing, parcel = await ctx.store.shipment_and_parcel(order_id)
    if existing is not None and existing.cancelled_at is not None:
        # Compensated already (the cancel came first or the saga is over): never book now.
        log.info("order %s is closed by a cancel; not shipping", order_id)
        return []
    if existing is not None:
        return _outcome(existing)
    if parcel is None:
        raise NotReadyError(f"order {order_id}: order.placed not seen yet, cannot ship")
    answer = await book_with_address(
        parcel.address,
        ctx.keyring,
        lambda address: ctx.provider.book(reference=order_id, address=address, items=parcel.items),
        ctx.config.carrier_timeout_s,
        "the carrier (booking)",
    )
    now = utc_now()
    country = parcel.address.country_code
    if isinstance(answer, Refused):
        log.info("order %s: no carrier for %s (%s)", order_id, country, answer.reason)
        return _outcome(await ctx.store.record_failed(order_id, answer.reason, country, now))
    log.info("order %s: booked %s as %s", order_id, answer.carrier, answer.shipment_id)
    shipment = await ctx.store.record_scheduled(
        order_id, answer.shipment_id, answer.carrier, country, answer.estimated_delivery, now
    )
    return _outcome(shipment)


@router.on(ShipmentCancel, provider="carrier")
async def cancel(message: Message[ShipmentCancel], ctx: ShippingContext) -> list[Event]:
    """Cancel the order's booking if there is one; always acknowledge."""
    order_id = message.saga_key
    await ctx.store.lock_order(order_id)
    existing = await ctx.store.shipment(order_id)
    if (
        existing is not None
        and existing.outcome == "scheduled"
        and existing.shipment_id is not None
        and existing.cancelled_at is None
    ):
        await within(
            ctx.provider.cancel(shipment_id=existing.shipment_id),
            ctx.config.carrier_timeout_s,
            "the carrier (cancellation)",
        )
    shipment = await ctx.store.record_cancelled(order_id, utc_now())
    assert shipment.cancelled_at is not None
    log.info(
        "order %s: shipment %s cancelled (%s)", order_id, shipment.shipment_id, message.event.reason
    )
    return [ShipmentCancelled(shipment_id=shipment.shipment_id, cancelled_at=shipment.cancelled_at)]
