"""Inventory state: stock per SKU and what each order holds (each return's: ``return_store``).

Handlers see the :class:`InventoryStore` protocol. :class:`PostgresInventoryStore` runs inside the
delivery's transaction (row locks are held until it commits); :class:`InMemoryInventoryStore`
backs the unit tests. ``tests/integration/services/test_stores.py`` runs one contract suite
against both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

from events.database import Connection
from events.locks import KeyLocks

ReservationStatus = Literal["reserved", "shipped", "released", "failed"]

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.stock (
    sku       text PRIMARY KEY,
    -- Units taken in: the seed, plus returned units restocked (minus those unstocked again).
    seeded    int  NOT NULL CHECK (seeded >= 0),
    available int  NOT NULL CHECK (available >= 0),
    reserved  int  NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    shipped   int  NOT NULL DEFAULT 0 CHECK (shipped >= 0),
    -- The conservation law, enforced by the database itself.
    CHECK (available + reserved + shipped = seeded)
);
CREATE TABLE IF NOT EXISTS {schema}.reservations (
    order_id       text        PRIMARY KEY,
    reservation_id text,
    status         text        NOT NULL
        CHECK (status IN ('reserved', 'shipped', 'released', 'failed')),
    reason         text,
    decided_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
-- Held lines of a reservation, or the shortages of a failed one (then `available` is set).
CREATE TABLE IF NOT EXISTS {schema}.reservation_lines (
    order_id  text NOT NULL REFERENCES {schema}.reservations ON DELETE CASCADE,
    sku       text NOT NULL,
    quantity  int  NOT NULL CHECK (quantity > 0),
    available int,
    PRIMARY KEY (order_id, sku)
);
"""
"""The inventory's tables; ``{schema}`` stands for the service's schema."""


@dataclass(frozen=True, slots=True)
class Line:
    """A quantity of one SKU; on a failed reservation, also what was available then."""

    sku: str
    quantity: int
    available: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """What inventory decided for one order, and where its units are now.

    ``reservation_id`` is None for a failed reservation and for a release that arrived before
    the order (a marker that stops a late ``order.placed`` from reserving).
    """

    order_id: str
    reservation_id: str | None
    status: ReservationStatus
    lines: tuple[Line, ...]
    decided_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A SKU that cannot cover the requested quantity; ``known`` is False for unknown SKUs."""

    sku: str
    requested: int
    available: int
    known: bool


@dataclass(frozen=True, slots=True)
class StockLevel:
    """Where the units of one SKU are."""

    sku: str
    seeded: int
    available: int
    reserved: int
    shipped: int

    @property
    def balanced(self) -> bool:
        """The conservation law: no unit created or lost."""
        return self.available + self.reserved + self.shipped == self.seeded


class InventoryStore(Protocol):
    """The operations the inventory handlers need."""

    async def lock_order(self, order_id: str) -> None:
        """Serialize the rest of this transaction with every other one on the same order."""

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        """:meth:`lock_order` each of ``order_ids``, at once (a batch's, before its handlers)."""

    async def seed(self, stock: Mapping[str, int]) -> list[str]:
        """Add the SKUs that are not there yet; returns the SKUs added (existing ones kept)."""

    async def reservation(self, order_id: str) -> Reservation | None:
        """What was decided for the order, if anything."""

    async def hold(
        self, order_id: str, reservation_id: str, wanted: Mapping[str, int], at: datetime
    ) -> Reservation | list[Unavailable]:
        """Reserve every wanted quantity or none: records and returns the reservation, or
        returns what is short and changes nothing."""

    async def record_failure(
        self, order_id: str, reason: str, short: list[Unavailable], at: datetime
    ) -> Reservation:
        """Record that the order could not be reserved (so a redelivery re-emits the same)."""

    async def release(self, order_id: str, at: datetime) -> Reservation:
        """Put whatever the order holds back to available and mark it released.

        With no record yet, records a released marker with no reservation id.
        """

    async def ship(self, order_id: str, at: datetime) -> bool:
        """Move the order's reserved units to shipped; False when it holds no reserved units."""

    async def take_in(self, units: Mapping[str, int]) -> None:
        """Add returned units to stock: ``seeded`` and ``available`` grow alike (a SKU not
        stocked yet is added)."""

    async def take_out(self, units: Mapping[str, int]) -> list[Unavailable]:
        """Remove units taken in (:meth:`take_in`) again, every quantity or none: returns []
        and shrinks ``seeded`` and ``available`` alike, or returns what is short and changes
        nothing."""

    async def stock_levels(self) -> dict[str, StockLevel]:
        """Every SKU's seeded, available, reserved and shipped units (the invariant query)."""


def _lines_of(wanted: Mapping[str, int]) -> tuple[Line, ...]:
    return tuple(Line(sku, qty) for sku, qty in sorted(wanted.items()))


class PostgresInventoryStore:
    """:class:`InventoryStore` on the delivery transaction's connection."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.locks = KeyLocks(conn, schema)

    async def lock_order(self, order_id: str) -> None:
        await self.locks.lock(order_id)

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        await self.locks.lock_all(order_ids)

    async def seed(self, stock: Mapping[str, int]) -> list[str]:
        rows = await self.conn.fetch(
            f"INSERT INTO {self.schema}.stock (sku, seeded, available)"
            " SELECT sku, qty, qty FROM unnest($1::text[], $2::int[]) AS s(sku, qty)"
            " ON CONFLICT (sku) DO NOTHING RETURNING sku",
            list(stock),
            list(stock.values()),
        )
        return sorted(row["sku"] for row in rows)

    async def reservation(self, order_id: str) -> Reservation | None:
        return await self._reservation(order_id, lock_stock=False)

    async def _reservation(self, order_id: str, *, lock_stock: bool) -> Reservation | None:
        """The order's reservation; with ``lock_stock`` its lines' stock rows locked by the
        same statement, in sku order (see :meth:`_lock_stock`), as a move needs them."""
        # The reservation's own row needs no lock here: the order's lock is held already.
        locking = (
            f"WITH locked AS (SELECT s.sku FROM {self.schema}.stock AS s WHERE s.sku IN"
            f" (SELECT sku FROM {self.schema}.reservation_lines WHERE order_id = $1)"
            " ORDER BY s.sku FOR UPDATE) "
            if lock_stock
            else ""
        )
        row = await self.conn.fetchrow(
            f"{locking}SELECT r.reservation_id, r.status, r.reason, r.decided_at,"
            " l.skus, l.quantities, l.availables"
            + (", (SELECT count(*) FROM locked) AS locked" if lock_stock else "")
            + f" FROM {self.schema}.reservations AS r, LATERAL (SELECT"
            " array_agg(sku ORDER BY sku) AS skus,"
            " array_agg(quantity ORDER BY sku) AS quantities,"
            " array_agg(available ORDER BY sku) AS availables"
            f" FROM {self.schema}.reservation_lines WHERE order_id = r.order_id) AS l"
            " WHERE r.order_id = $1",
            order_id,
        )
        if row is None:
            return None
        lines = zip(
            row["skus"] or (), row["quantities"] or (), row["availables"] or (), strict=True
        )
        return Reservation(
            order_id=order_id,
            reservation_id=row["reservation_id"],
            status=row["status"],
            lines=tuple(Line(*line) for line in lines),
            decided_at=row["decided_at"],
            reason=row["reason"],
        )

    async def _lock_stock(self, skus: list[str]) -> dict[str, int]:
        # Lock in sku order: two orders touching the same SKUs can never wait on each other
        # in a cycle.
        rows = await self.conn.fetch(
            f"SELECT sku, available FROM {self.schema}.stock WHERE sku = ANY($1::text[])"
            " ORDER BY sku FOR UPDATE",
            skus,
        )
        return {row["sku"]: row["available"] for row in rows}

    async def hold(
        self, order_id: str, reservation_id: str, wanted: Mapping[str, int], at: datetime
    ) -> Reservation | list[Unavailable]:
        available = await self._lock_stock(sorted(wanted))
        short = [
            Unavailable(sku, qty, available.get(sku, 0), sku in available)
            for sku, qty in sorted(wanted.items())
            if available.get(sku, 0) < qty
        ]
        if short:
            return short
        return await self._record(
            order_id, reservation_id, "reserved", None, _lines_of(wanted), at, take_stock=True
        )

    async def _record(
        self,
        order_id: str,
        reservation_id: str | None,
        status: ReservationStatus,
        reason: str | None,
        lines: tuple[Line, ...],
        at: datetime,
        *,
        take_stock: bool = False,
    ) -> Reservation:
        # The reservation and its lines in one statement (the lines' key is checked at its end);
        # with ``take_stock`` (a hold, its stock rows locked already) the lines' quantities
        # move from available to reserved in it too.
        taking = (
            f", taken AS (UPDATE {self.schema}.stock AS s"
            " SET available = s.available - w.qty, reserved = s.reserved + w.qty"
            " FROM unnest($6::text[], $7::int[]) AS w(sku, qty) WHERE s.sku = w.sku)"
            if take_stock
            else ""
        )
        await self.conn.execute(
            f"WITH reservation AS (INSERT INTO {self.schema}.reservations"
            " (order_id, reservation_id, status, reason, decided_at, updated_at)"
            f" VALUES ($1, $2, $3, $4, $5, $5)){taking}"
            f" INSERT INTO {self.schema}.reservation_lines (order_id, sku, quantity, available)"
            " SELECT $1, l.sku, l.quantity, l.available"
            " FROM unnest($6::text[], $7::int[], $8::int[]) AS l(sku, quantity, available)",
            order_id,
            reservation_id,
            status,
            reason,
            at,
            [line.sku for line in lines],
            [line.quantity for line in lines],
            [line.available for line in lines],
        )
        return Reservation(order_id, reservation_id, status, lines, at, reason)

    async def record_failure(
        self, order_id: str, reason: str, short: list[Unavailable], at: datetime
    ) -> Reservation:
        lines = tuple(Line(u.sku, u.requested, u.available) for u in sorted(short, key=_sku))
        return await self._record(order_id, None, "failed", reason, lines, at)

    async def _move(self, current: Reservation, source: str, target: str, at: datetime) -> None:
        """Move the reservation's units from ``source`` to ``target`` (its stock rows were
        locked when it was read: :meth:`_reservation`)."""
        status = "shipped" if target == "shipped" else "released"
        await self.conn.execute(
            f"WITH moved AS (UPDATE {self.schema}.stock AS s"
            f" SET {source} = s.{source} - l.quantity, {target} = s.{target} + l.quantity"
            f" FROM {self.schema}.reservation_lines AS l"
            " WHERE l.order_id = $1 AND s.sku = l.sku)"
            f" UPDATE {self.schema}.reservations SET status = $2, updated_at = $3"
            " WHERE order_id = $1",
            current.order_id,
            status,
            at,
        )

    async def release(self, order_id: str, at: datetime) -> Reservation:
        current = await self._reservation(order_id, lock_stock=True)
        if current is None:
            return await self._record(order_id, None, "released", None, (), at)
        if current.status in ("reserved", "shipped"):
            await self._move(current, current.status, "available", at)
            return replace(current, status="released")
        return current

    async def ship(self, order_id: str, at: datetime) -> bool:
        current = await self._reservation(order_id, lock_stock=True)
        if current is None or current.status != "reserved":
            return False
        await self._move(current, "reserved", "shipped", at)
        return True

    async def take_in(self, units: Mapping[str, int]) -> None:
        await self._lock_stock(sorted(units))
        await self.conn.execute(
            f"INSERT INTO {self.schema}.stock AS s (sku, seeded, available)"
            " SELECT sku, qty, qty FROM unnest($1::text[], $2::int[]) AS u(sku, qty)"
            " ON CONFLICT (sku) DO UPDATE SET seeded = s.seeded + excluded.seeded,"
            " available = s.available + excluded.available",
            sorted(units),
            [units[sku] for sku in sorted(units)],
        )

    async def take_out(self, units: Mapping[str, int]) -> list[Unavailable]:
        available = await self._lock_stock(sorted(units))
        short = [
            Unavailable(sku, qty, available.get(sku, 0), sku in available)
            for sku, qty in sorted(units.items())
            if available.get(sku, 0) < qty
        ]
        if short:
            return short
        await self.conn.execute(
            f"UPDATE {self.schema}.stock AS s"
            " SET seeded = s.seeded - u.qty, available = s.available - u.qty"
            " FROM unnest($1::text[], $2::int[]) AS u(sku, qty) WHERE s.sku = u.sku",
            list(units),
            list(units.values()),
        )
        return []

    async def stock_levels(self) -> dict[str, StockLevel]:
        rows = await self.conn.fetch(
            f"SELECT sku, seeded, available, reserved, shipped FROM {self.schema}.stock"
            " ORDER BY sku"
        )
        return {row["sku"]: StockLevel(**dict(row)) for row in rows}


def _sku(item: Unavailable) -> str:
    return item.sku


class InMemoryInventoryStore:
    """:class:`InventoryStore` in dictionaries, for unit tests (single task, no rollback)."""

    def __init__(self, stock: Mapping[str, int] | None = None) -> None:
        self._stock: dict[str, StockLevel] = {}
        self._reservations: dict[str, Reservation] = {}
        if stock:
            self._seed(stock)

    def _seed(self, stock: Mapping[str, int]) -> list[str]:
        added = sorted(sku for sku in stock if sku not in self._stock)
        for sku in added:
            self._stock[sku] = StockLevel(sku, stock[sku], stock[sku], 0, 0)
        return added

    async def lock_order(self, order_id: str) -> None:
        # One task at a time touches the dictionaries; there is nothing to serialize.
        return None

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        return None

    async def seed(self, stock: Mapping[str, int]) -> list[str]:
        return self._seed(stock)

    async def reservation(self, order_id: str) -> Reservation | None:
        return self._reservations.get(order_id)

    async def hold(
        self, order_id: str, reservation_id: str, wanted: Mapping[str, int], at: datetime
    ) -> Reservation | list[Unavailable]:
        short = []
        for sku, qty in sorted(wanted.items()):
            level = self._stock.get(sku)
            available = level.available if level else 0
            if available < qty:
                short.append(Unavailable(sku, qty, available, level is not None))
        if short:
            return short
        for sku, qty in wanted.items():
            level = self._stock[sku]
            self._stock[sku] = replace(
                level, available=level.available - qty, reserved=level.reserved + qty
            )
        record = Reservation(order_id, reservation_id, "reserved", _lines_of(wanted), at)
        self._reservations[order_id] = record
        return record

    async def record_failure(
        self, order_id: str, reason: str, short: list[Unavailable], at: datetime
    ) -> Reservation:
        lines = tuple(Line(u.sku, u.requested, u.available) for u in sorted(short, key=_sku))
        record = Reservation(order_id, None, "failed", lines, at, reason)
        self._reservations[order_id] = record
        return record

    def _move(self, record: Reservation, source: str, target: str) -> None:
        for line in record.lines:
            level = self._stock[line.sku]
            counts = {
                "available": level.available,
                "reserved": level.reserved,
                "shipped": level.shipped,
            }
            counts[source] -= line.quantity
            counts[target] += line.quantity
            self._stock[line.sku] = StockLevel(
                line.sku, level.seeded, counts["available"], counts["reserved"], counts["shipped"]
            )

    async def release(self, order_id: str, at: datetime) -> Reservation:
        current = self._reservations.get(order_id)
        if current is None:
            current = Reservation(order_id, None, "released", (), at)
        elif current.status in ("reserved", "shipped"):
            self._move(current, current.status, "available")
            current = replace(current, status="released")
        self._reservations[order_id] = current
        return current

    async def ship(self, order_id: str, at: datetime) -> bool:
        current = self._reservations.get(order_id)
        if current is None or current.status != "reserved":
            return False
        self._move(current, "reserved", "shipped")
        self._reservations[order_id] = replace(current, status="shipped")
        return True

    async def take_in(self, units: Mapping[str, int]) -> None:
        for sku, qty in units.items():
            level = self._stock.get(sku, StockLevel(sku, 0, 0, 0, 0))
            self._stock[sku] = replace(
                level, seeded=level.seeded + qty, available=level.available + qty
            )

    async def take_out(self, units: Mapping[str, int]) -> list[Unavailable]:
        short = []
        for sku, qty in sorted(units.items()):
            level = self._stock.get(sku)
            available = level.available if level else 0
            if available < qty:
                short.append(Unavailable(sku, qty, available, level is not None))
        if short:
            return short
        for sku, qty in units.items():
            level = self._stock[sku]
            self._stock[sku] = replace(
                level, seeded=level.seeded - qty, available=level.available - qty
            )
        return []

    async def stock_levels(self) -> dict[str, StockLevel]:
        return dict(sorted(self._stock.items()))
