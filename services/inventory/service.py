"""The inventory process: its :class:`Service` definition (a replay builds it as it runs live)."""

from __future__ import annotations

import logging

from events.locks import saga_keys_locked_first
from events.service import Service, ServiceRuntime
from events.settings import Settings
from services.inventory import SERVICE_NAME
from services.inventory.context import InventoryContext, InventorySettings
from services.inventory.provider import JsonStockFeed, StockFeed
from services.inventory.return_store import DDL as RETURNS_DDL
from services.inventory.return_store import PostgresReturnStore
from services.inventory.returns import router  # the order handlers and the returns' on one router
from services.inventory.store import DDL, PostgresInventoryStore

log = logging.getLogger("choreo.inventory")


def build(
    settings: Settings,
    config: InventorySettings | None = None,
    *,
    provider: StockFeed | None = None,
) -> Service[InventoryContext]:
    """The inventory service; ``config`` defaults to the ``CHOREO_INVENTORY_*`` environment,
    ``provider`` to the seed file's stock feed."""
    cfg = config or InventorySettings()
    feed = provider or JsonStockFeed(cfg.seed_file)

    async def seed_stock(runtime: ServiceRuntime[InventoryContext]) -> None:
        stock = await feed.initial_stock()
        async with runtime.db.pool.acquire() as conn, conn.transaction():
            added = await PostgresInventoryStore(conn, runtime.schema).seed(stock)
        log.info("seeded %d of %d SKUs from %s", len(added), len(stock), cfg.seed_file)

    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn, schema: InventoryContext(
            PostgresInventoryStore(conn, schema), feed, cfg, PostgresReturnStore(conn, schema)
        ),
        ddl=(DDL, RETURNS_DDL),
        on_start=seed_stock,
        # A batch's orders locked in one statement, not one per handler.
        batch_scope=saga_keys_locked_first(lambda ctx, keys: ctx.store.lock_orders(keys)),
    )
