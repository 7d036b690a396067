"""Where the inventory's stock comes from: a stock feed read once, when the service first starts.

:class:`JsonStockFeed` reads a JSON object ``{"SKU": units, ...}`` from a file; a feed from a
warehouse system can be plugged in behind the same :class:`StockFeed` protocol.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from events.errors import PermanentError


class StockFeed(Protocol):
    """The initial stock of every SKU the warehouse carries."""

    async def initial_stock(self) -> dict[str, int]:
        """SKU → units on hand."""


class JsonStockFeed:
    """A :class:`StockFeed` from a JSON file mapping SKU to a non-negative unit count."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def initial_stock(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise PermanentError(f"cannot read the stock seed file {self.path}: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(sku, str) and sku and type(qty) is int and qty >= 0
            for sku, qty in data.items()
        ):
            raise PermanentError(f"{self.path} must map SKU names to non-negative integers")
        return {str(sku): int(qty) for sku, qty in data.items()}
