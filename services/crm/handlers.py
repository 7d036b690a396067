"""CRM handlers: remember the order's customer, count the order once it ships."""

from __future__ import annotations

import logging

from contracts.catalog import CATALOG, CrmCustomerUpdated, OrderPlaced, ShipmentScheduled
from events.errors import NotReadyError
from events.model import Event, Message, utc_now
from events.providers import within
from events.router import Router
from services.crm import SERVICE_NAME
from services.crm.context import CrmContext
from services.crm.store import CustomerOrder, Profile

log = logging.getLogger("choreo.crm")

router: Router[CrmContext] = Router(SERVICE_NAME, CATALOG)


def _updated(profile: Profile) -> list[Event]:
    return [
        CrmCustomerUpdated(
            customer_id=profile.customer_id,
            orders_count=profile.orders_count,
            lifetime_value_minor=profile.lifetime_value_minor,
            currency=profile.currency,
            updated_at=profile.updated_at,
        )
    ]


@router.on(OrderPlaced)
async def remember_order(message: Message[OrderPlaced], ctx: CrmContext) -> list[Event]:
    """Keep whose order it is and what it is worth."""
    placed = message.event
    await ctx.store.save_order(
        CustomerOrder(message.saga_key, placed.customer_id, placed.total_minor, placed.currency)
    )
    return []


@router.on(ShipmentScheduled, provider="crm")
async def count_order(message: Message[ShipmentScheduled], ctx: CrmContext) -> list[Event]:
    """Add the shipped order to its customer's profile once; a repeat re-emits the update."""
    try:
        # Counting claims the order first; only an order it cannot claim is read back.
        profile, counted = await ctx.store.count_order(message.saga_key, utc_now())
    except LookupError:
        raise NotReadyError(f"order {message.saga_key}: order.placed not seen yet") from None
    if not counted:
        # Counted before (a redelivery), or by a concurrent delivery that pushed it: a push
        # of this older profile now could overwrite a newer one in the CRM.
        return _updated(profile)
    # A timeout rolls the count back with the transaction; the retry counts the order again.
    await within(
        ctx.provider.push_profile(
            customer_id=profile.customer_id,
            currency=profile.currency,
            orders_count=profile.orders_count,
            lifetime_value_minor=profile.lifetime_value_minor,
        ),
        ctx.config.timeout_s,
        "the CRM",
    )
    log.info(
        "order %s: customer %s now has %d orders",
        message.saga_key,
        profile.customer_id,
        profile.orders_count,
    )
    return _updated(profile)
