"""Inventory's returns handlers on the in-memory stores: inspection, restock, unstock, and
conservation of stock."""

from __future__ import annotations

import pytest

from contracts.parts import ReservedItem
from contracts.return_samples import sample_return_requested
from contracts.returns import (
    InventoryRestocked,
    InventoryRestockRefused,
    InventoryUnstock,
    InventoryUnstocked,
    ItemCondition,
    PickupScheduled,
)
from events.errors import PermanentError, TransientError
from events.model import Message, utc_now
from services.inventory import returns
from services.inventory.context import InventoryContext, InventorySettings
from services.inventory.provider import JsonStockFeed
from services.inventory.return_store import InMemoryReturnStore
from services.inventory.store import InMemoryInventoryStore, Reservation
from tests.unit.services import emitted

STOCK = {"SKU-RED-MUG": 10, "SKU-TEA-BOX": 10}


@pytest.fixture
def ctx() -> InventoryContext:
    config = InventorySettings()
    return InventoryContext(
        InMemoryInventoryStore(STOCK),
        JsonStockFeed(config.seed_file),
        config,
        InMemoryReturnStore(),
    )


def requested(
    return_id: str, *items: tuple[str, int], condition: ItemCondition = "unopened"
) -> Message:
    lines = tuple((sku, qty, 100) for sku, qty in items) or (("SKU-RED-MUG", 1, 1250),)
    event = sample_return_requested("ord-1", items=lines, condition=condition)
    return Message.first(event, saga_type="return", saga_key=return_id, producer="test")


def picked_up(return_id: str) -> Message:
    event = PickupScheduled(
        pickup_id="pck-1", carrier="DHL", country_code="DE", scheduled_at=utc_now()
    )
    return Message.first(event, saga_type="return", saga_key=return_id, producer="shipping")


def unstock(return_id: str) -> Message:
    event = InventoryUnstock(reason="refund_declined", requested_at=utc_now())
    return Message.first(event, saga_type="return", saga_key=return_id, producer="coordinator")


async def levels(ctx: InventoryContext) -> dict[str, tuple[int, int, int, int]]:
    stock = await ctx.store.stock_levels()
    assert all(level.balanced for level in stock.values())
    return {s: (lv.seeded, lv.available, lv.reserved, lv.shipped) for s, lv in stock.items()}


async def inspect(ctx: InventoryContext, return_id: str, *items: tuple[str, int], **kw) -> list:
    assert await emitted(returns.remember_return(requested(return_id, *items, **kw), ctx)) == []
    return await emitted(returns.inspect(picked_up(return_id), ctx))


async def test_an_intact_return_is_restocked(ctx):
    [event] = await inspect(ctx, "r1", ("SKU-RED-MUG", 2), ("SKU-TEA-BOX", 1), ("SKU-RED-MUG", 1))
    assert isinstance(event, InventoryRestocked)
    assert event.restock_id.startswith("rst-")
    assert event.items == (
        ReservedItem(sku="SKU-RED-MUG", quantity=3),
        ReservedItem(sku="SKU-TEA-BOX", quantity=1),
    )
    assert await levels(ctx) == {"SKU-RED-MUG": (13, 13, 0, 0), "SKU-TEA-BOX": (11, 11, 0, 0)}


async def test_a_returned_sku_not_in_stock_is_added(ctx):
    [event] = await inspect(ctx, "r1", ("SKU-NEW", 2))
    assert isinstance(event, InventoryRestocked)
    assert (await levels(ctx))["SKU-NEW"] == (2, 2, 0, 0)


async def test_a_repeated_pickup_re_emits_the_restock_and_restocks_once(ctx):
    [first] = await inspect(ctx, "r1", ("SKU-RED-MUG", 2))
    [again] = await emitted(returns.inspect(picked_up("r1"), ctx))
    assert again == first
    assert (await levels(ctx))["SKU-RED-MUG"] == (12, 12, 0, 0)


async def test_a_damaged_item_refuses_the_whole_return(ctx):
    [event] = await inspect(ctx, "r1", ("SKU-RED-MUG", 2), ("SKU-TEA-BOX", 1), condition="damaged")
    assert event == InventoryRestockRefused(
        reason="damaged", skus=("SKU-RED-MUG", "SKU-TEA-BOX"), refused_at=event.refused_at
    )
    assert await levels(ctx) == {"SKU-RED-MUG": (10, 10, 0, 0), "SKU-TEA-BOX": (10, 10, 0, 0)}
    assert await emitted(returns.inspect(picked_up("r1"), ctx)) == [event]


async def test_a_pickup_before_the_request_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"return\.requested not seen"):
        await emitted(returns.inspect(picked_up("r1"), ctx))


async def test_unstock_takes_exactly_the_restocked_units_out_once(ctx):
    [restocked] = await inspect(ctx, "r1", ("SKU-RED-MUG", 2))
    acks = [await emitted(returns.unstock(unstock("r1"), ctx)) for _ in range(3)]
    assert all(ack == [acks[0][0]] for ack in acks)
    assert acks[0][0] == InventoryUnstocked(
        restock_id=restocked.restock_id, unstocked_at=acks[0][0].unstocked_at
    )
    assert await levels(ctx) == {"SKU-RED-MUG": (10, 10, 0, 0), "SKU-TEA-BOX": (10, 10, 0, 0)}
    # The return is closed: a redelivered pickup restocks nothing.
    assert await emitted(returns.inspect(picked_up("r1"), ctx)) == []
    assert (await levels(ctx))["SKU-RED-MUG"] == (10, 10, 0, 0)


async def test_unstock_with_nothing_restocked_is_acknowledged_and_blocks_a_late_restock(ctx):
    await returns.remember_return(requested("r1", ("SKU-RED-MUG", 2)), ctx)
    [ack] = await emitted(returns.unstock(unstock("r1"), ctx))
    assert ack.restock_id is None
    assert await emitted(returns.inspect(picked_up("r1"), ctx)) == []
    assert (await levels(ctx))["SKU-RED-MUG"] == (10, 10, 0, 0)


async def test_unstock_of_a_refused_return_is_acknowledged_without_id(ctx):
    await inspect(ctx, "r1", ("SKU-RED-MUG", 2), condition="damaged")
    [ack] = await emitted(returns.unstock(unstock("r1"), ctx))
    assert ack.restock_id is None
    assert (await levels(ctx))["SKU-RED-MUG"] == (10, 10, 0, 0)


async def test_unstock_of_units_reserved_since_needs_a_person(ctx):
    await inspect(ctx, "r1", ("SKU-NEW", 2))
    assert isinstance(await ctx.store.hold("o1", "res-1", {"SKU-NEW": 1}, utc_now()), Reservation)
    with pytest.raises(PermanentError, match="cannot unstock"):
        await emitted(returns.unstock(unstock("r1"), ctx))
    assert (await levels(ctx))["SKU-NEW"] == (2, 1, 1, 0)
    assert (await ctx.returns.restock("r1")).unstocked_at is None
