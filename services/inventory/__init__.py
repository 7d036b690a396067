"""Inventory: holds stock for orders, all lines or none.

Reacts to:
    ``order.placed``: reserve every line → ``inventory.reserved`` or
    ``inventory.reservation_failed`` (reason ``out_of_stock`` or ``unknown_sku``).
    ``inventory.release`` (compensation): put back whatever the order holds, reserved or shipped
    → ``inventory.released`` (always, also when nothing was held).
    ``shipment.scheduled``: the order's reserved units become shipped (emits nothing).

Stock is seeded once, on first start, from ``seed_stock.json`` (``CHOREO_INVENTORY_SEED_FILE``).
Every SKU keeps ``available + reserved + shipped == seeded``.
"""

from __future__ import annotations

from contracts.catalog import InventoryReleased, InventoryReservationFailed, InventoryReserved
from events.process import ProcessSpec

SERVICE_NAME = "inventory"

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="services.inventory.service:build",
    produces=(InventoryReserved, InventoryReservationFailed, InventoryReleased),
)
"""The inventory process, as :mod:`choreo.registry` lists it."""
