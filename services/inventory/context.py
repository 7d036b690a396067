"""The inventory handlers' settings and context.

Imported by the handlers and by the service definition (``service.py``), so that neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.inventory.provider import StockFeed
from services.inventory.return_store import ReturnStore
from services.inventory.store import InventoryStore


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
    returns: ReturnStore
    """The returns saga's records (:mod:`services.inventory.returns`)."""
