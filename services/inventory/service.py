"""The inventory process: settings, the handlers' context, and the :class:`Service` definition."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.database import schema_name
from events.service import Service, ServiceRuntime
from events.settings import Settings
from services.inventory import SERVICE_NAME
from services.inventory.handlers import router
from services.inventory.provider import JsonStockFeed, StockFeed
from services.inventory.store import DDL, InventoryStore, PostgresInventoryStore

log = logging.getLogger("choreo.inventory")


class InventorySettings(BaseSettings):
    """Inventory configuration, read from ``CHOREO_INVENTORY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_INVENTORY_", extra="ignore", frozen=True)

    seed_file: Path = Field(
        default=Path(__file__).resolve().parent / "seed_stock.json",
        description="JSON object SKU → units, seeded once (SKUs already present are kept).",
    )


@dataclass(frozen=True, slots=True)
class InventoryContext:
    """What an inventory handler works with, bound to the delivery's transaction."""

    store: InventoryStore
    provider: StockFeed
    config: InventorySettings


def build(
    settings: Settings,
    config: InventorySettings | None = None,
    *,
    provider: StockFeed | None = None,
) -> Service[InventoryContext]:
    """The inventory service; ``config`` defaults to the ``CHOREO_INVENTORY_*`` environment,
    ``provider`` to the seed file's stock feed."""
    cfg = config or InventorySettings()
    schema = schema_name(settings, SERVICE_NAME)
    feed = provider or JsonStockFeed(cfg.seed_file)

    async def seed_stock(runtime: ServiceRuntime[InventoryContext]) -> None:
        stock = await feed.initial_stock()
        async with runtime.db.pool.acquire() as conn, conn.transaction():
            added = await PostgresInventoryStore(conn, runtime.schema).seed(stock)
        log.info("seeded %d of %d SKUs from %s", len(added), len(stock), cfg.seed_file)

    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn: InventoryContext(PostgresInventoryStore(conn, schema), feed, cfg),
        ddl=(DDL,),
        on_start=seed_stock,
    )
