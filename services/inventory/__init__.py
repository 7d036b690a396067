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

SERVICE_NAME = "inventory"
