"""Shipping state: each order's parcel and shipment; each return's pickup address and pickup.

Handlers see the :class:`ShippingStore` protocol. :class:`PostgresShippingStore` runs inside the
delivery's transaction; :class:`InMemoryShippingStore` backs the unit tests.
``tests/integration/services/test_stores.py`` runs one contract suite against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from contracts.parts import Address, ReservedItem
from events.database import Connection
from events.locks import KeyLocks

Outcome = Literal["scheduled", "failed", "none"]
"""``none``: a cancel came before any booking; the order is closed without one."""

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.parcels (
    order_id     text   PRIMARY KEY,
    recipient    text   NOT NULL,
    line1        text   NOT NULL,
    line2        text,
    city         text   NOT NULL,
    postal_code  text   NOT NULL,
    country_code text   NOT NULL,
    skus         text[] NOT NULL,
    quantities   int[]  NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.shipments (
    order_id           text        PRIMARY KEY,
    outcome            text        NOT NULL CHECK (outcome IN ('scheduled', 'failed', 'none')),
    shipment_id        text,
    carrier            text,
    country_code       text,
    estimated_delivery timestamptz,
    reason             text,
    decided_at         timestamptz NOT NULL,
    cancelled_at       timestamptz,
    CHECK ((outcome = 'scheduled') = (shipment_id IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS {schema}.return_parcels (
    return_id    text   PRIMARY KEY,
    recipient    text   NOT NULL,
    line1        text   NOT NULL,
    line2        text,
    city         text   NOT NULL,
    postal_code  text   NOT NULL,
    country_code text   NOT NULL,
    skus         text[] NOT NULL,
    quantities   int[]  NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.pickups (
    return_id    text        PRIMARY KEY,
    outcome      text        NOT NULL CHECK (outcome IN ('scheduled', 'failed', 'none')),
    pickup_id    text,
    carrier      text,
    country_code text,
    reason       text,
    decided_at   timestamptz NOT NULL,
    cancelled_at timestamptz,
    CHECK ((outcome = 'scheduled') = (pickup_id IS NOT NULL))
);
"""
"""The shipping service's tables; ``{schema}`` stands for the service's schema."""


@dataclass(frozen=True, slots=True)
class Parcel:
    """Where an order ships to and what goes in the box."""

    order_id: str
    address: Address
    items: tuple[ReservedItem, ...]


@dataclass(frozen=True, slots=True)
class Shipment:
    """The outcome for one order. ``cancelled_at`` set means closed: never book it again."""

    order_id: str
    outcome: Outcome
    decided_at: datetime
    shipment_id: str | None = None
    carrier: str | None = None
    country_code: str | None = None
    estimated_delivery: datetime | None = None
    reason: str | None = None
    cancelled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReturnParcel:
    """Where a return's items are collected and what they are."""

    return_id: str
    address: Address
    items: tuple[ReservedItem, ...]


@dataclass(frozen=True, slots=True)
class Pickup:
    """The pickup outcome for one return. ``cancelled_at`` set means closed: never book it."""

    return_id: str
    outcome: Outcome
    decided_at: datetime
    pickup_id: str | None = None
    carrier: str | None = None
    country_code: str | None = None
    reason: str | None = None
    cancelled_at: datetime | None = None


class ShippingStore(Protocol):
    """The operations the shipping handlers need."""

    async def lock_order(self, order_id: str) -> None:
        """Serialize the rest of this transaction with every other one on the same order."""

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        """:meth:`lock_order` each of ``order_ids``, at once (a batch's, before its handlers)."""

    async def save_parcel(self, parcel: Parcel) -> bool:
        """Remember the parcel; False (and nothing changed) when one was already there."""

    async def parcel(self, order_id: str) -> Parcel | None:
        """The order's parcel, if ``order.placed`` was seen."""

    async def shipment(self, order_id: str) -> Shipment | None:
        """What became of the order's shipment, if anything."""

    async def shipment_and_parcel(self, order_id: str) -> tuple[Shipment | None, Parcel | None]:
        """:meth:`shipment` and :meth:`parcel` of the order, read together (a booking needs
        both)."""

    async def record_scheduled(
        self,
        order_id: str,
        shipment_id: str,
        carrier: str,
        country_code: str,
        estimated_delivery: datetime | None,
        at: datetime,
    ) -> Shipment:
        """Record a booking (the order must have no shipment outcome yet)."""

    async def record_failed(
        self, order_id: str, reason: str, country_code: str, at: datetime
    ) -> Shipment:
        """Record that no carrier could be booked (the order must have no outcome yet)."""

    async def record_cancelled(self, order_id: str, at: datetime) -> Shipment:
        """Close the order; with no outcome yet, records outcome ``none`` so it never ships."""

    async def save_return_parcel(self, parcel: ReturnParcel) -> bool:
        """Remember where to collect a return; False (nothing changed) when already there."""

    async def return_parcel(self, return_id: str) -> ReturnParcel | None:
        """The return's pickup address and items, if ``return.requested`` was seen."""

    async def pickup(self, return_id: str) -> Pickup | None:
        """What became of the return's pickup, if anything."""

    async def record_pickup(self, pickup: Pickup) -> Pickup:
        """Record a booked or refused pickup (the return must have no pickup outcome yet)."""

    async def record_pickup_cancelled(self, return_id: str, at: datetime) -> Pickup:
        """Close the return's pickup; with no outcome yet, records ``none`` so it is never
        booked."""


_PICKUP_COLUMNS = (
    "return_id, outcome, decided_at, pickup_id, carrier, country_code, reason, cancelled_at"
)

_SHIPMENT_COLUMNS = (
    "order_id, outcome, decided_at, shipment_id, carrier, country_code, estimated_delivery,"
    " reason, cancelled_at"
)
_SHIPMENT_FIELDS = _SHIPMENT_COLUMNS.split(", ")
_SHIPMENT_OF_S = ", ".join(f"s.{c}" for c in _SHIPMENT_FIELDS)
_ADDRESS_FIELDS = ("recipient", "line1", "line2", "city", "postal_code", "country_code")
_PARCEL_OF_P = ", ".join(f"p.{c} AS parcel_{c}" for c in (*_ADDRESS_FIELDS, "skus", "quantities"))


def _address_of(row: Any, prefix: str = "") -> tuple[Address, tuple[ReservedItem, ...]]:
    """A parcel row's address and items (its columns named ``prefix`` + column)."""
    address = Address(**{field: row[prefix + field] for field in _ADDRESS_FIELDS})
    items = tuple(
        ReservedItem(sku=sku, quantity=qty)
        for sku, qty in zip(row[prefix + "skus"], row[prefix + "quantities"], strict=True)
    )
    return address, items


class PostgresShippingStore:
    """:class:`ShippingStore` on the delivery transaction's connection."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.locks = KeyLocks(conn, schema)

    async def lock_order(self, order_id: str) -> None:
        await self.locks.lock(order_id)

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        await self.locks.lock_all(order_ids)

    async def _save_address(
        self,
        table: str,
        key_column: str,
        key: str,
        address: Address,
        items: tuple[ReservedItem, ...],
    ) -> bool:
        a = address
        inserted = await self.conn.fetchval(
            f"INSERT INTO {self.schema}.{table} ({key_column}, recipient, line1, line2, city,"
            " postal_code, country_code, skus, quantities)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            f" ON CONFLICT ({key_column}) DO NOTHING RETURNING true",
            key,
            a.recipient,
            a.line1,
            a.line2,
            a.city,
            a.postal_code,
            a.country_code,
            [item.sku for item in items],
            [item.quantity for item in items],
        )
        return bool(inserted)

    async def _address(
        self, table: str, key_column: str, key: str
    ) -> tuple[Address, tuple[ReservedItem, ...]] | None:
        row = await self.conn.fetchrow(
            f"SELECT * FROM {self.schema}.{table} WHERE {key_column} = $1", key
        )
        return None if row is None else _address_of(row)

    async def save_parcel(self, parcel: Parcel) -> bool:
        return await self._save_address(
            "parcels", "order_id", parcel.order_id, parcel.address, parcel.items
        )

    async def parcel(self, order_id: str) -> Parcel | None:
        found = await self._address("parcels", "order_id", order_id)
        return Parcel(order_id, *found) if found else None

    async def shipment(self, order_id: str) -> Shipment | None:
        row = await self.conn.fetchrow(
            f"SELECT {_SHIPMENT_COLUMNS} FROM {self.schema}.shipments WHERE order_id = $1",
            order_id,
        )
        return Shipment(**dict(row)) if row else None

    async def shipment_and_parcel(self, order_id: str) -> tuple[Shipment | None, Parcel | None]:
        row = await self.conn.fetchrow(
            f"SELECT {_SHIPMENT_OF_S}, p.order_id AS parcel_of, {_PARCEL_OF_P}"
            " FROM (SELECT $1::text AS key) AS k"
            f" LEFT JOIN {self.schema}.shipments AS s ON s.order_id = k.key"
            f" LEFT JOIN {self.schema}.parcels AS p ON p.order_id = k.key",
            order_id,
        )
        assert row is not None  # one row for the key, whatever the joins found
        shipment = (
            Shipment(**{c: row[c] for c in _SHIPMENT_FIELDS})
            if row["order_id"] is not None
            else None
        )
        parcel = (
            Parcel(order_id, *_address_of(row, "parcel_")) if row["parcel_of"] is not None else None
        )
        return shipment, parcel

    async def _insert(self, s: Shipment) -> Shipment:
        await self.conn.execute(
            f"INSERT INTO {self.schema}.shipments ({_SHIPMENT_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            s.order_id,
            s.outcome,
            s.decided_at,
            s.shipment_id,
            s.carrier,
            s.country_code,
            s.estimated_delivery,
            s.reason,
            s.cancelled_at,
        )
        return s

    async def record_scheduled(
        self,
        order_id: str,
        shipment_id: str,
        carrier: str,
        country_code: str,
        estimated_delivery: datetime | None,
        at: datetime,
    ) -> Shipment:
        return await self._insert(
            Shipment(
                order_id, "scheduled", at, shipment_id, carrier, country_code, estimated_delivery
            )
        )

    async def record_failed(
        self, order_id: str, reason: str, country_code: str, at: datetime
    ) -> Shipment:
        return await self._insert(
            Shipment(order_id, "failed", at, country_code=country_code, reason=reason)
        )

    async def record_cancelled(self, order_id: str, at: datetime) -> Shipment:
        row = await self.conn.fetchrow(
            f"UPDATE {self.schema}.shipments SET cancelled_at = coalesce(cancelled_at, $2)"
            f" WHERE order_id = $1 RETURNING {_SHIPMENT_COLUMNS}",
            order_id,
            at,
        )
        if row is not None:
            return Shipment(**dict(row))
        return await self._insert(Shipment(order_id, "none", at, cancelled_at=at))

    async def save_return_parcel(self, parcel: ReturnParcel) -> bool:
        return await self._save_address(
            "return_parcels", "return_id", parcel.return_id, parcel.address, parcel.items
        )

    async def return_parcel(self, return_id: str) -> ReturnParcel | None:
        found = await self._address("return_parcels", "return_id", return_id)
        return ReturnParcel(return_id, *found) if found else None

    async def pickup(self, return_id: str) -> Pickup | None:
        row = await self.conn.fetchrow(
            f"SELECT {_PICKUP_COLUMNS} FROM {self.schema}.pickups WHERE return_id = $1",
            return_id,
        )
        return Pickup(**dict(row)) if row else None

    async def record_pickup(self, pickup: Pickup) -> Pickup:
        p = pickup
        await self.conn.execute(
            f"INSERT INTO {self.schema}.pickups ({_PICKUP_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            p.return_id,
            p.outcome,
            p.decided_at,
            p.pickup_id,
            p.carrier,
            p.country_code,
            p.reason,
            p.cancelled_at,
        )
        return pickup

    async def record_pickup_cancelled(self, return_id: str, at: datetime) -> Pickup:
        row = await self.conn.fetchrow(
            f"UPDATE {self.schema}.pickups SET cancelled_at = coalesce(cancelled_at, $2)"
            f" WHERE return_id = $1 RETURNING {_PICKUP_COLUMNS}",
            return_id,
            at,
        )
        if row is not None:
            return Pickup(**dict(row))
        return await self.record_pickup(Pickup(return_id, "none", at, cancelled_at=at))


class InMemoryShippingStore:
    """:class:`ShippingStore` in dictionaries, for unit tests (single task, no rollback)."""

    def __init__(self) -> None:
        self._parcels: dict[str, Parcel] = {}
        self._shipments: dict[str, Shipment] = {}
        self._return_parcels: dict[str, ReturnParcel] = {}
        self._pickups: dict[str, Pickup] = {}

    async def lock_order(self, order_id: str) -> None:
        # One task at a time touches the dictionaries; there is nothing to serialize.
        return None

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        return None

    async def save_parcel(self, parcel: Parcel) -> bool:
        if parcel.order_id in self._parcels:
            return False
        self._parcels[parcel.order_id] = parcel
        return True

    async def parcel(self, order_id: str) -> Parcel | None:
        return self._parcels.get(order_id)

    async def shipment(self, order_id: str) -> Shipment | None:
        return self._shipments.get(order_id)

    async def shipment_and_parcel(self, order_id: str) -> tuple[Shipment | None, Parcel | None]:
        return self._shipments.get(order_id), self._parcels.get(order_id)

    def _insert(self, shipment: Shipment) -> Shipment:
        if shipment.order_id in self._shipments:
            raise ValueError(f"order {shipment.order_id} already has a shipment outcome")
        self._shipments[shipment.order_id] = shipment
        return shipment

    async def record_scheduled(
        self,
        order_id: str,
        shipment_id: str,
        carrier: str,
        country_code: str,
        estimated_delivery: datetime | None,
        at: datetime,
    ) -> Shipment:
        return self._insert(
            Shipment(
                order_id, "scheduled", at, shipment_id, carrier, country_code, estimated_delivery
            )
        )

    async def record_failed(
        self, order_id: str, reason: str, country_code: str, at: datetime
    ) -> Shipment:
        return self._insert(
            Shipment(order_id, "failed", at, country_code=country_code, reason=reason)
        )

    async def record_cancelled(self, order_id: str, at: datetime) -> Shipment:
        current = self._shipments.get(order_id)
        if current is None:
            return self._insert(Shipment(order_id, "none", at, cancelled_at=at))
        updated = replace(current, cancelled_at=current.cancelled_at or at)
        self._shipments[order_id] = updated
        return updated

    async def save_return_parcel(self, parcel: ReturnParcel) -> bool:
        if parcel.return_id in self._return_parcels:
            return False
        self._return_parcels[parcel.return_id] = parcel
        return True

    async def return_parcel(self, return_id: str) -> ReturnParcel | None:
        return self._return_parcels.get(return_id)

    async def pickup(self, return_id: str) -> Pickup | None:
        return self._pickups.get(return_id)

    async def record_pickup(self, pickup: Pickup) -> Pickup:
        if pickup.return_id in self._pickups:
            raise ValueError(f"return {pickup.return_id} already has a pickup outcome")
        self._pickups[pickup.return_id] = pickup
        return pickup

    async def record_pickup_cancelled(self, return_id: str, at: datetime) -> Pickup:
        current = self._pickups.get(return_id)
        if current is None:
            return await self.record_pickup(Pickup(return_id, "none", at, cancelled_at=at))
        updated = replace(current, cancelled_at=current.cancelled_at or at)
        self._pickups[return_id] = updated
        return updated
