"""Inventory's part in the returns saga: inspect what comes back, restock it, unstock on command.

Registered on the inventory router (:data:`services.inventory.handlers.router`); the service
definition imports this module so the process runs them. Messages of a return are keyed by the
return id (``message.saga_key``); each handler locks the return first, because
``pickup.scheduled`` and ``inventory.unstock`` arrive on different topics. A restock takes the
units in (``seeded`` and ``available`` grow alike) and an unstock takes exactly those units out
again, so every SKU keeps ``available + reserved + shipped == seeded``.
"""

from __future__ import annotations

import logging
from collections import Counter

from contracts.parts import ReservedItem
from contracts.returns import (
    InventoryRestocked,
    InventoryRestockRefused,
    InventoryUnstock,
    InventoryUnstocked,
    PickupScheduled,
    ReturnRequested,
)
from events.errors import NotReadyError, PermanentError
from events.model import Event, Message, utc_now
from services.inventory.context import InventoryContext
from services.inventory.handlers import router
from services.inventory.return_store import Restock, ReturnedGoods, ReturnedLine
from services.inventory.store import Line

log = logging.getLogger("choreo.inventory")

__all__ = ["router"]

DAMAGED = "damaged"
"""``inventory.restock_refused.reason`` when an item is declared damaged."""


def _restock_outcome(restock: Restock) -> list[Event]:
    """The event that tells a recorded inspection (sent again on a repeated pickup)."""
    if restock.unstocked_at is not None:
        # Compensated already: the return's saga is over, restocking now would leak units.
        log.info("return %s was unstocked; not restocking again", restock.return_id)
        return []
    if restock.outcome == "restocked" and restock.restock_id is not None:
        return [
            InventoryRestocked(
                restock_id=restock.restock_id,
                items=tuple(ReservedItem(sku=ln.sku, quantity=ln.quantity) for ln in restock.lines),
                restocked_at=restock.decided_at,
            )
        ]
    if restock.outcome == "refused":
        return [
            InventoryRestockRefused(
                reason=restock.reason or DAMAGED,
                skus=tuple(line.sku for line in restock.lines),
                refused_at=restock.decided_at,
            )
        ]
    return []


@router.on(ReturnRequested)
async def remember_return(message: Message[ReturnRequested], ctx: InventoryContext) -> list[Event]:
    """Keep what comes back and in which declared condition."""
    requested = message.event
    lines = tuple(ReturnedLine(i.sku, i.quantity, i.condition) for i in requested.items)
    await ctx.returns.save_return(ReturnedGoods(message.saga_key, requested.order_id, lines))
    return []


@router.on(PickupScheduled)
async def inspect(message: Message[PickupScheduled], ctx: InventoryContext) -> list[Event]:
    """Refuse a return with a damaged item; restock every unit of any other, once."""
    return_id = message.saga_key
    await ctx.store.lock_order(return_id)
    existing = await ctx.returns.restock(return_id)
    if existing is not None:
        return _restock_outcome(existing)
    goods = await ctx.returns.returned(return_id)
    if goods is None:
        raise NotReadyError(f"return {return_id}: return.requested not seen yet, no items")
    now = utc_now()
    damaged: Counter[str] = Counter()
    units: Counter[str] = Counter()
    # A return may list one SKU on several lines; stock is counted per SKU.
    for line in goods.lines:
        (damaged if line.condition == DAMAGED else units)[line.sku] += line.quantity
    if damaged:
        log.info("return %s: refused, damaged %s", return_id, sorted(damaged))
        lines = tuple(Line(sku, qty) for sku, qty in sorted(damaged.items()))
        refused = Restock(return_id, "refused", now, reason=DAMAGED, lines=lines)
        return _restock_outcome(await ctx.returns.record_restock(refused))
    # Derived from the message, not random, so that a replay of the log rebuilds the same id.
    restock_id = f"rst-{message.envelope.event_id.hex[:16]}"
    await ctx.store.take_in(units)
    log.info("return %s: restocked %s as %s", return_id, dict(units), restock_id)
    lines = tuple(Line(sku, qty) for sku, qty in sorted(units.items()))
    restocked = Restock(return_id, "restocked", now, restock_id=restock_id, lines=lines)
    return _restock_outcome(await ctx.returns.record_restock(restocked))


@router.on(InventoryUnstock)
async def unstock(message: Message[InventoryUnstock], ctx: InventoryContext) -> list[Event]:
    """Take the return's restocked units out again, once; always acknowledge."""
    return_id = message.saga_key
    await ctx.store.lock_order(return_id)
    existing = await ctx.returns.restock(return_id)
    if existing is not None and existing.outcome == "restocked" and existing.unstocked_at is None:
        short = await ctx.store.take_out({line.sku: line.quantity for line in existing.lines})
        if short:
            # Other orders reserved the units since: taking fewer would break the books, and
            # waiting may never end. A person must look (the coordinator flags the return).
            raise PermanentError(f"return {return_id}: cannot unstock, units are gone: {short}")
    closed = await ctx.returns.record_unstocked(return_id, utc_now())
    assert closed.unstocked_at is not None
    restock_id = closed.restock_id if closed.outcome == "restocked" else None
    log.info("return %s: unstocked (%s), restock %s", return_id, message.event.reason, restock_id)
    return [InventoryUnstocked(restock_id=restock_id, unstocked_at=closed.unstocked_at)]
