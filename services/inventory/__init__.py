"""Inventory: holds stock for orders, all lines or none.

Reacts to:
    ``order.placed``: reserve every line → ``inventory.reserved`` or
    ``inventory.reservation_failed`` (reason ``out_of_stock`` or ``unknown_sku``).
    ``inventory.release`` (compensation): put back whatever the order holds, reserved or shipped
    → ``inventory.released`` (always, also when nothing was held).
    ``shipment.scheduled``: the order's reserved units become shipped (emits nothing).

And in the returns saga (:mod:`services.inventory.returns`, keyed by the return id):
    ``return.requested``: remember the returned items and their declared condition.
    ``pickup.scheduled``: inspect once → ``inventory.restock_refused`` (reason ``damaged``) when
    an item is declared damaged, else take every unit in → ``inventory.restocked``.
    ``inventory.unstock`` (compensation): take the restocked units out again →
    ``inventory.unstocked`` (always; ``restock_id`` None when nothing was restocked).

Stock is seeded once, on first start, from ``seed_stock.json`` (``CHOREO_INVENTORY_SEED_FILE``).
Every SKU keeps ``available + reserved + shipped == seeded``, ``seeded`` counting the units
taken in: the seed, and the returned units restocked.
"""

from __future__ import annotations

from contracts.catalog import InventoryReleased, InventoryReservationFailed, InventoryReserved
from contracts.returns import InventoryRestocked, InventoryRestockRefused, InventoryUnstocked
from events.process import ProcessSpec

SERVICE_NAME = "inventory"

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="services.inventory.service:build",
    produces=(
        InventoryReserved,
        InventoryReservationFailed,
        InventoryReleased,
        InventoryRestocked,
        InventoryRestockRefused,
        InventoryUnstocked,
    ),
)
"""The inventory process, as :mod:`choreo.registry` lists it."""
