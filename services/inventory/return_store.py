"""Inventory state of the returns saga: what each return sends back and what inspection decided.

Handlers see the :class:`ReturnStore` protocol beside the stock's
:class:`~services.inventory.store.InventoryStore` (a restock changes both in one transaction).
:class:`PostgresReturnStore` runs inside the delivery's transaction; :class:`InMemoryReturnStore`
backs the unit tests. ``tests/integration/services/test_return_stores.py`` runs one contract
suite against both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from contracts.returns import ItemCondition
from events.database import Connection
from services.inventory.store import Line

RestockOutcome = Literal["restocked", "refused", "none"]
"""``none``: an unstock came before any inspection; the return is closed without a restock."""

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.returns (
    return_id  text   PRIMARY KEY,
    order_id   text   NOT NULL,
    skus       text[] NOT NULL,
    quantities int[]  NOT NULL,
    conditions text[] NOT NULL
);
-- Restocked: the units taken in; refused: the SKUs that failed inspection, with their units.
CREATE TABLE IF NOT EXISTS {schema}.restocks (
    return_id    text        PRIMARY KEY,
    outcome      text        NOT NULL CHECK (outcome IN ('restocked', 'refused', 'none')),
    restock_id   text,
    reason       text,
    skus         text[]      NOT NULL,
    quantities   int[]       NOT NULL,
    decided_at   timestamptz NOT NULL,
    unstocked_at timestamptz,
    CHECK ((outcome = 'restocked') = (restock_id IS NOT NULL))
);
"""
"""The inventory's returns tables; ``{schema}`` stands for the service's schema."""


@dataclass(frozen=True, slots=True)
class ReturnedLine:
    """A quantity of one SKU sent back, in the condition the customer declared."""

    sku: str
    quantity: int
    condition: ItemCondition


@dataclass(frozen=True, slots=True)
class ReturnedGoods:
    """What ``return.requested`` says comes back, and of which order."""

    return_id: str
    order_id: str
    lines: tuple[ReturnedLine, ...]


@dataclass(frozen=True, slots=True)
class Restock:
    """What inspection decided for one return. ``unstocked_at`` set means closed."""

    return_id: str
    outcome: RestockOutcome
    decided_at: datetime
    restock_id: str | None = None
    reason: str | None = None
    lines: tuple[Line, ...] = ()
    unstocked_at: datetime | None = None


class ReturnStore(Protocol):
    """The operations the inventory's returns handlers need."""

    async def save_return(self, goods: ReturnedGoods) -> bool:
        """Remember what a return sends back; False (nothing changed) when already there."""

    async def returned(self, return_id: str) -> ReturnedGoods | None:
        """What the return sends back, if ``return.requested`` was seen."""

    async def restock(self, return_id: str) -> Restock | None:
        """What inspection decided for the return, if anything."""

    async def record_restock(self, restock: Restock) -> Restock:
        """Record inspection's decision (the return must have none yet)."""

    async def record_unstocked(self, return_id: str, at: datetime) -> Restock:
        """Close the return; with no decision yet, records ``none`` so it is never restocked."""


_RESTOCK_COLUMNS = (
    "return_id, outcome, decided_at, restock_id, reason, skus, quantities, unstocked_at"
)


def _restock_of(row: Mapping[str, Any]) -> Restock:
    lines = tuple(Line(s, q) for s, q in zip(row["skus"], row["quantities"], strict=True))
    return Restock(
        return_id=row["return_id"],
        outcome=row["outcome"],
        decided_at=row["decided_at"],
        restock_id=row["restock_id"],
        reason=row["reason"],
        lines=lines,
        unstocked_at=row["unstocked_at"],
    )


class PostgresReturnStore:
    """:class:`ReturnStore` on the delivery transaction's connection."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    async def save_return(self, goods: ReturnedGoods) -> bool:
        inserted = await self.conn.fetchval(
            f"INSERT INTO {self.schema}.returns"
            " (return_id, order_id, skus, quantities, conditions) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (return_id) DO NOTHING RETURNING true",
            goods.return_id,
            goods.order_id,
            [line.sku for line in goods.lines],
            [line.quantity for line in goods.lines],
            [line.condition for line in goods.lines],
        )
        return bool(inserted)

    async def returned(self, return_id: str) -> ReturnedGoods | None:
        row = await self.conn.fetchrow(
            f"SELECT * FROM {self.schema}.returns WHERE return_id = $1", return_id
        )
        if row is None:
            return None
        lines = tuple(
            ReturnedLine(sku, qty, condition)
            for sku, qty, condition in zip(
                row["skus"], row["quantities"], row["conditions"], strict=True
            )
        )
        return ReturnedGoods(return_id, row["order_id"], lines)

    async def restock(self, return_id: str) -> Restock | None:
        row = await self.conn.fetchrow(
            f"SELECT {_RESTOCK_COLUMNS} FROM {self.schema}.restocks WHERE return_id = $1",
            return_id,
        )
        return _restock_of(row) if row else None

    async def record_restock(self, restock: Restock) -> Restock:
        r = restock
        await self.conn.execute(
            f"INSERT INTO {self.schema}.restocks ({_RESTOCK_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            r.return_id,
            r.outcome,
            r.decided_at,
            r.restock_id,
            r.reason,
            [line.sku for line in r.lines],
            [line.quantity for line in r.lines],
            r.unstocked_at,
        )
        return restock

    async def record_unstocked(self, return_id: str, at: datetime) -> Restock:
        row = await self.conn.fetchrow(
            f"UPDATE {self.schema}.restocks SET unstocked_at = coalesce(unstocked_at, $2)"
            f" WHERE return_id = $1 RETURNING {_RESTOCK_COLUMNS}",
            return_id,
            at,
        )
        if row is not None:
            return _restock_of(row)
        return await self.record_restock(Restock(return_id, "none", at, unstocked_at=at))


class InMemoryReturnStore:
    """:class:`ReturnStore` in dictionaries, for unit tests (single task, no rollback)."""

    def __init__(self) -> None:
        self._returns: dict[str, ReturnedGoods] = {}
        self._restocks: dict[str, Restock] = {}

    async def save_return(self, goods: ReturnedGoods) -> bool:
        if goods.return_id in self._returns:
            return False
        self._returns[goods.return_id] = goods
        return True

    async def returned(self, return_id: str) -> ReturnedGoods | None:
        return self._returns.get(return_id)

    async def restock(self, return_id: str) -> Restock | None:
        return self._restocks.get(return_id)

    async def record_restock(self, restock: Restock) -> Restock:
        if restock.return_id in self._restocks:
            raise ValueError(f"return {restock.return_id} already has a restock outcome")
        self._restocks[restock.return_id] = restock
        return restock

    async def record_unstocked(self, return_id: str, at: datetime) -> Restock:
        current = self._restocks.get(return_id)
        if current is None:
            return await self.record_restock(Restock(return_id, "none", at, unstocked_at=at))
        updated = replace(current, unstocked_at=current.unstocked_at or at)
        self._restocks[return_id] = updated
        return updated
