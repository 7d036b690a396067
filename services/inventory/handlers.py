"""Inventory handlers: reserve on ``order.placed``, release on ``inventory.release``, ship on
``shipment.scheduled``.

Each handler runs in the delivery's transaction and first locks its order, because the three
event types arrive on different topics and may be processed at the same time. Messages are
deduplicated by event id before they get here; commands the coordinator retries carry new event
ids, so each handler is also idempotent by order id.
"""

from __future__ import annotations

import logging
from collections import Counter

from contracts.catalog import (
    CATALOG,
    InventoryRelease,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderPlaced,
    ShipmentScheduled,
)
from contracts.parts import ReservedItem, Shortage
from events.model import Event, Message, utc_now
from events.router import Router
from services.inventory import SERVICE_NAME
from services.inventory.context import InventoryContext
from services.inventory.store import Reservation

log = logging.getLogger("choreo.inventory")

OUT_OF_STOCK = "out_of_stock"
UNKNOWN_SKU = "unknown_sku"

router: Router[InventoryContext] = Router(SERVICE_NAME, CATALOG)


def _outcome(record: Reservation) -> list[Event]:
    """The event that tells the decision recorded for an order (sent again on redelivery)."""
    if record.status == "failed":
        return [
            InventoryReservationFailed(
                reason=record.reason or OUT_OF_STOCK,
                unavailable=tuple(
                    Shortage(sku=line.sku, requested=line.quantity, available=line.available or 0)
                    for line in record.lines
                ),
            )
        ]
    if record.status == "released" or record.reservation_id is None:
        # The order was compensated: its saga is over, and holding stock now would leak it.
        log.info("order %s was released; not reserving again", record.order_id)
        return []
    return [
        InventoryReserved(
            reservation_id=record.reservation_id,
            items=tuple(ReservedItem(sku=ln.sku, quantity=ln.quantity) for ln in record.lines),
            reserved_at=record.decided_at,
        )
    ]


@router.on(OrderPlaced)
async def reserve(message: Message[OrderPlaced], ctx: InventoryContext) -> list[Event]:
    """Hold every line of the order, or nothing."""
    store = ctx.store
    await store.lock_order(message.saga_key)
    existing = await store.reservation(message.saga_key)
    if existing is not None:
        return _outcome(existing)
    # An order may list one SKU on several lines; stock is held per SKU.
    wanted: Counter[str] = Counter()
    for item in message.event.items:
        wanted[item.sku] += item.quantity
    now = utc_now()
    # Derived from the message, not random, so that a replay of the log (choreo replay)
    # rebuilds the same id; one order.placed reserves at most once (the order id check above).
    reservation_id = f"res-{message.envelope.event_id.hex[:16]}"
    held = await store.hold(message.saga_key, reservation_id, wanted, now)
    if isinstance(held, Reservation):
        log.info("order %s: reserved %s as %s", message.saga_key, dict(wanted), reservation_id)
        return _outcome(held)
    reason = UNKNOWN_SKU if any(not u.known for u in held) else OUT_OF_STOCK
    log.info("order %s: cannot reserve (%s): %s", message.saga_key, reason, held)
    return _outcome(await store.record_failure(message.saga_key, reason, held, now))


@router.on(InventoryRelease)
async def release(message: Message[InventoryRelease], ctx: InventoryContext) -> list[Event]:
    """Put back whatever the order holds; always acknowledge, the coordinator waits for it."""
    await ctx.store.lock_order(message.saga_key)
    now = utc_now()
    record = await ctx.store.release(message.saga_key, now)
    log.info(
        "order %s: released (%s), reservation %s",
        message.saga_key,
        message.event.reason,
        record.reservation_id,
    )
    return [InventoryReleased(reservation_id=record.reservation_id, released_at=now)]


@router.on(ShipmentScheduled)
async def ship(message: Message[ShipmentScheduled], ctx: InventoryContext) -> list[Event]:
    """The carrier takes the order's reserved units: count them as shipped."""
    await ctx.store.lock_order(message.saga_key)
    # Stamped with the booking's own time rather than the clock: this handler emits nothing,
    # so the log would not tell a replay when it ran, and the row must come out the same.
    if not await ctx.store.ship(message.saga_key, message.event.scheduled_at):
        # Already shipped (a redelivery), or released by a compensation that came first.
        log.info("order %s: no reserved units to ship", message.saga_key)
    return []
