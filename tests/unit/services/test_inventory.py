"""Inventory handlers on the in-memory store: all-or-nothing reservation, idempotent release,
shipping, and conservation of stock."""

from __future__ import annotations

import json
import random

import pytest

from contracts.catalog import (
    InventoryRelease,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    ShipmentScheduled,
)
from contracts.parts import ReservedItem, Shortage
from contracts.samples import sample_order_placed
from events.errors import PermanentError
from events.model import Message, utc_now
from events.settings import get_settings
from services.inventory import SERVICE_NAME, handlers
from services.inventory.context import InventoryContext, InventorySettings
from services.inventory.provider import JsonStockFeed
from services.inventory.return_store import InMemoryReturnStore
from services.inventory.service import build
from services.inventory.store import InMemoryInventoryStore
from tests.unit.services import emitted

STOCK = {"SKU-RED-MUG": 10, "SKU-TEA-BOX": 10, "SKU-RARE-VASE": 5}


@pytest.fixture
def ctx() -> InventoryContext:
    config = InventorySettings()
    return InventoryContext(
        InMemoryInventoryStore(STOCK),
        JsonStockFeed(config.seed_file),
        config,
        InMemoryReturnStore(),
    )


def placed(order_id: str, *skus: tuple[str, int]) -> Message:
    lines = tuple((sku, qty, 100) for sku, qty in skus)
    return Message.first(
        sample_order_placed(skus=lines), saga_type="order", saga_key=order_id, producer="test"
    )


def release(order_id: str) -> Message:
    command = InventoryRelease(reason="payment_declined", requested_at=utc_now())
    return Message.first(command, saga_type="order", saga_key=order_id, producer="saga-coordinator")


def scheduled(order_id: str) -> Message:
    event = ShipmentScheduled(
        shipment_id="shp-1", carrier="DHL", country_code="DE", scheduled_at=utc_now()
    )
    return Message.first(event, saga_type="order", saga_key=order_id, producer="shipping")


async def levels(ctx: InventoryContext) -> dict[str, tuple[int, int, int]]:
    return {
        sku: (level.available, level.reserved, level.shipped)
        for sku, level in (await ctx.store.stock_levels()).items()
    }


async def test_reserves_every_line_and_moves_units_to_reserved(ctx):
    [event] = await emitted(
        handlers.reserve(placed("o1", ("SKU-RED-MUG", 2), ("SKU-TEA-BOX", 1)), ctx)
    )
    assert isinstance(event, InventoryReserved)
    assert event.reservation_id.startswith("res-")
    assert event.items == (
        ReservedItem(sku="SKU-RED-MUG", quantity=2),
        ReservedItem(sku="SKU-TEA-BOX", quantity=1),
    )
    assert await levels(ctx) == {
        "SKU-RARE-VASE": (5, 0, 0),
        "SKU-RED-MUG": (8, 2, 0),
        "SKU-TEA-BOX": (9, 1, 0),
    }


async def test_lines_of_the_same_sku_are_reserved_together(ctx):
    [event] = await emitted(
        handlers.reserve(placed("o1", ("SKU-RED-MUG", 2), ("SKU-RED-MUG", 3)), ctx)
    )
    assert event.items == (ReservedItem(sku="SKU-RED-MUG", quantity=5),)
    assert (await levels(ctx))["SKU-RED-MUG"] == (5, 5, 0)


async def test_one_short_line_reserves_nothing(ctx):
    before = await levels(ctx)
    [event] = await emitted(
        handlers.reserve(placed("o1", ("SKU-RED-MUG", 2), ("SKU-RARE-VASE", 6)), ctx)
    )
    assert event == InventoryReservationFailed(
        reason="out_of_stock",
        unavailable=(Shortage(sku="SKU-RARE-VASE", requested=6, available=5),),
    )
    assert await levels(ctx) == before


async def test_unknown_sku_is_unavailable_zero_and_reserves_nothing(ctx):
    before = await levels(ctx)
    [event] = await emitted(
        handlers.reserve(placed("o1", ("SKU-RED-MUG", 1), ("SKU-NOPE", 1)), ctx)
    )
    assert event == InventoryReservationFailed(
        reason="unknown_sku", unavailable=(Shortage(sku="SKU-NOPE", requested=1, available=0),)
    )
    assert await levels(ctx) == before


async def test_the_last_units_go_to_the_first_order_only(ctx):
    [first] = await emitted(handlers.reserve(placed("o1", ("SKU-RARE-VASE", 3)), ctx))
    [second] = await emitted(handlers.reserve(placed("o2", ("SKU-RARE-VASE", 3)), ctx))
    assert isinstance(first, InventoryReserved)
    assert second == InventoryReservationFailed(
        reason="out_of_stock",
        unavailable=(Shortage(sku="SKU-RARE-VASE", requested=3, available=2),),
    )


async def test_order_placed_again_with_a_new_event_id_reserves_once_and_re_emits(ctx):
    first = placed("o1", ("SKU-RED-MUG", 2))
    again = Message.first(first.event, saga_type="order", saga_key="o1", producer="test")
    assert again.envelope.event_id != first.envelope.event_id
    [one] = await emitted(handlers.reserve(first, ctx))
    [two] = await emitted(handlers.reserve(again, ctx))
    assert one == two
    assert (await levels(ctx))["SKU-RED-MUG"] == (8, 2, 0)


async def test_a_failed_reservation_is_re_emitted_identically(ctx):
    [one] = await emitted(handlers.reserve(placed("o1", ("SKU-RARE-VASE", 9)), ctx))
    # The stock changes meanwhile; the recorded outcome does not.
    await emitted(handlers.reserve(placed("o2", ("SKU-RARE-VASE", 5)), ctx))
    [two] = await emitted(handlers.reserve(placed("o1", ("SKU-RARE-VASE", 9)), ctx))
    assert isinstance(one, InventoryReservationFailed)
    assert one == two


async def test_release_puts_units_back_once_however_often_it_is_commanded(ctx):
    [reserved] = await emitted(handlers.reserve(placed("o1", ("SKU-RED-MUG", 2)), ctx))
    acks = [await emitted(handlers.release(release("o1"), ctx)) for _ in range(3)]
    assert {ack[0].reservation_id for ack in acks} == {reserved.reservation_id}
    assert all(isinstance(ack[0], InventoryReleased) for ack in acks)
    assert (await levels(ctx))["SKU-RED-MUG"] == (10, 0, 0)


async def test_release_of_a_failed_reservation_is_acknowledged_without_id(ctx):
    await emitted(handlers.reserve(placed("o1", ("SKU-RARE-VASE", 9)), ctx))
    [ack] = await emitted(handlers.release(release("o1"), ctx))
    assert ack.reservation_id is None
    assert (await levels(ctx))["SKU-RARE-VASE"] == (5, 0, 0)


async def test_release_before_the_order_is_acknowledged_and_the_late_order_holds_nothing(ctx):
    [ack] = await emitted(handlers.release(release("o1"), ctx))
    assert isinstance(ack, InventoryReleased)
    assert ack.reservation_id is None
    assert await emitted(handlers.reserve(placed("o1", ("SKU-RED-MUG", 2)), ctx)) == []
    assert (await levels(ctx))["SKU-RED-MUG"] == (10, 0, 0)


async def test_shipment_moves_reserved_units_to_shipped_and_emits_nothing(ctx):
    await emitted(handlers.reserve(placed("o1", ("SKU-RED-MUG", 2)), ctx))
    assert await emitted(handlers.ship(scheduled("o1"), ctx)) == []
    # A redelivery ships nothing more.
    assert await emitted(handlers.ship(scheduled("o1"), ctx)) == []
    assert (await levels(ctx))["SKU-RED-MUG"] == (8, 0, 2)


async def test_release_after_shipping_returns_the_shipped_units(ctx):
    [reserved] = await emitted(handlers.reserve(placed("o1", ("SKU-RED-MUG", 2)), ctx))
    await emitted(handlers.ship(scheduled("o1"), ctx))
    [ack] = await emitted(handlers.release(release("o1"), ctx))
    assert ack.reservation_id == reserved.reservation_id
    assert (await levels(ctx))["SKU-RED-MUG"] == (10, 0, 0)
    assert await emitted(handlers.ship(scheduled("o1"), ctx)) == []  # released units never ship
    assert (await levels(ctx))["SKU-RED-MUG"] == (10, 0, 0)


async def test_stock_is_conserved_through_a_random_mix_of_steps(ctx):
    rng = random.Random(7)
    skus = [*STOCK, "SKU-NOPE"]
    for n in range(300):
        order_id = f"o{rng.randrange(60)}"
        step = rng.choice(["reserve", "reserve", "ship", "release"])
        if step == "reserve":
            lines = [(rng.choice(skus), rng.randint(1, 4)) for _ in range(rng.randint(1, 3))]
            await emitted(handlers.reserve(placed(order_id, *lines), ctx))
        elif step == "ship":
            await emitted(handlers.ship(scheduled(order_id), ctx))
        else:
            await emitted(handlers.release(release(order_id), ctx))
        stock = await ctx.store.stock_levels()
        assert all(level.balanced for level in stock.values()), f"step {n}: {stock}"
        assert {sku: level.seeded for sku, level in stock.items()} == STOCK
        assert all(
            min(level.available, level.reserved, level.shipped) >= 0 for level in stock.values()
        )


async def test_the_shipped_seed_file_has_finite_stock_including_a_rare_sku():
    stock = await JsonStockFeed(InventorySettings().seed_file).initial_stock()
    assert stock["SKU-RARE-VASE"] == 5
    assert stock["SKU-GOLD-WATCH"] == 50
    assert {"SKU-RED-MUG", "SKU-TEA-BOX", "SKU-BLUE-PEN"} <= set(stock)


async def test_a_broken_seed_file_is_a_permanent_error(tmp_path):
    path = tmp_path / "stock.json"
    path.write_text(json.dumps({"SKU-A": -1}))
    with pytest.raises(PermanentError, match="non-negative"):
        await JsonStockFeed(path).initial_stock()


def test_seed_file_is_configurable_by_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHOREO_INVENTORY_SEED_FILE", str(tmp_path / "x.json"))
    assert InventorySettings().seed_file == tmp_path / "x.json"


def test_build_declares_the_service():
    service = build(get_settings())
    assert service.name == SERVICE_NAME == "inventory"
    assert service.router.event_types == [
        "inventory.release",
        "inventory.unstock",
        "order.placed",
        "pickup.scheduled",
        "return.requested",
        "shipment.scheduled",
    ]
    assert service.on_start is not None
    assert "{schema}.stock" in service.ddl[0]
