"""CRM state: the orders seen (customer and total) and each customer's profile.

Handlers see the :class:`CrmStore` protocol. :class:`PostgresCrmStore` runs inside the
delivery's transaction; :class:`InMemoryCrmStore` backs the unit tests.
``tests/integration/services/test_stores.py`` runs one contract suite against both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from events.database import Connection

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.customers (
    customer_id          text        NOT NULL,
    currency             text        NOT NULL,
    orders_count         int         NOT NULL CHECK (orders_count >= 0),
    lifetime_value_minor bigint      NOT NULL CHECK (lifetime_value_minor >= 0),
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (customer_id, currency)
);
-- Orders seen; `counted_at` set once the order is in its customer's profile, together with
-- the profile it produced (re-emitted on redelivery).
CREATE TABLE IF NOT EXISTS {schema}.orders (
    order_id             text        PRIMARY KEY,
    customer_id          text        NOT NULL,
    total_minor          bigint      NOT NULL CHECK (total_minor >= 0),
    currency             text        NOT NULL,
    counted_at           timestamptz,
    orders_count         int,
    lifetime_value_minor bigint
);
"""
"""The CRM's tables; ``{schema}`` stands for the service's schema."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A customer's orders and lifetime value in one currency."""

    customer_id: str
    currency: str
    orders_count: int
    lifetime_value_minor: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerOrder:
    """An order as the CRM knows it; ``counted`` is the profile it produced, once counted."""

    order_id: str
    customer_id: str
    total_minor: int
    currency: str
    counted: Profile | None = None


class CrmStore(Protocol):
    """The operations the CRM handlers need."""

    async def save_order(self, order: CustomerOrder) -> bool:
        """Remember the order; False (and nothing changed) when it was already there."""

    async def order(self, order_id: str) -> CustomerOrder | None:
        """The order, if ``order.placed`` was seen."""

    async def count_order(self, order_id: str, at: datetime) -> tuple[Profile, bool]:
        """Add the (saved) order to its customer's profile once.

        Returns the profile right after the order was counted, and whether this call counted
        it: counting an order again changes nothing and returns the first count's profile.
        """

    async def profile(self, customer_id: str, currency: str) -> Profile | None:
        """The customer's current profile in ``currency`` (the invariant query)."""


class PostgresCrmStore:
    """:class:`CrmStore` on the delivery transaction's connection."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    async def save_order(self, order: CustomerOrder) -> bool:
        inserted = await self.conn.fetchval(
            f"INSERT INTO {self.schema}.orders (order_id, customer_id, total_minor, currency)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING RETURNING true",
            order.order_id,
            order.customer_id,
            order.total_minor,
            order.currency,
        )
        return bool(inserted)

    async def order(self, order_id: str) -> CustomerOrder | None:
        row = await self.conn.fetchrow(
            f"SELECT * FROM {self.schema}.orders WHERE order_id = $1", order_id
        )
        if row is None:
            return None
        counted = None
        if row["counted_at"] is not None:
            counted = Profile(
                row["customer_id"],
                row["currency"],
                row["orders_count"],
                row["lifetime_value_minor"],
                row["counted_at"],
            )
        return CustomerOrder(
            order_id, row["customer_id"], row["total_minor"], row["currency"], counted
        )

    async def count_order(self, order_id: str, at: datetime) -> tuple[Profile, bool]:
        # Claiming the order row first makes a concurrent second count wait, then find it done.
        claimed = await self.conn.fetchrow(
            f"UPDATE {self.schema}.orders SET counted_at = $2"
            " WHERE order_id = $1 AND counted_at IS NULL"
            " RETURNING customer_id, total_minor, currency",
            order_id,
            at,
        )
        if claimed is None:
            known = await self.order(order_id)
            if known is None or known.counted is None:
                raise LookupError(f"order {order_id} is unknown to the CRM")
            return known.counted, False
        # The profile counted and the order stamped with it in one statement (two tables).
        row = await self.conn.fetchrow(
            f"WITH profile AS (INSERT INTO {self.schema}.customers AS c"
            " (customer_id, currency, orders_count, lifetime_value_minor, updated_at)"
            " VALUES ($2, $3, 1, $4, $5)"
            " ON CONFLICT (customer_id, currency) DO UPDATE"
            " SET orders_count = c.orders_count + 1,"
            " lifetime_value_minor = c.lifetime_value_minor + excluded.lifetime_value_minor,"
            " updated_at = excluded.updated_at"
            " RETURNING customer_id, currency, orders_count, lifetime_value_minor, updated_at)"
            f" UPDATE {self.schema}.orders AS o SET orders_count = p.orders_count,"
            " lifetime_value_minor = p.lifetime_value_minor FROM profile AS p"
            " WHERE o.order_id = $1"
            " RETURNING p.customer_id, p.currency, p.orders_count, p.lifetime_value_minor,"
            " p.updated_at",
            order_id,
            claimed["customer_id"],
            claimed["currency"],
            claimed["total_minor"],
            at,
        )
        return Profile(**dict(row)), True

    async def profile(self, customer_id: str, currency: str) -> Profile | None:
        row = await self.conn.fetchrow(
            "SELECT customer_id, currency, orders_count, lifetime_value_minor, updated_at"
            f" FROM {self.schema}.customers WHERE customer_id = $1 AND currency = $2",
            customer_id,
            currency,
        )
        return Profile(**dict(row)) if row else None


class InMemoryCrmStore:
    """:class:`CrmStore` in dictionaries, for unit tests (single task, no rollback)."""

    def __init__(self) -> None:
        self._orders: dict[str, CustomerOrder] = {}
        self._profiles: dict[tuple[str, str], Profile] = {}

    async def save_order(self, order: CustomerOrder) -> bool:
        if order.order_id in self._orders:
            return False
        self._orders[order.order_id] = replace(order, counted=None)
        return True

    async def order(self, order_id: str) -> CustomerOrder | None:
        return self._orders.get(order_id)

    async def count_order(self, order_id: str, at: datetime) -> tuple[Profile, bool]:
        order = self._orders.get(order_id)
        if order is None:
            raise LookupError(f"order {order_id} is unknown to the CRM")
        if order.counted is not None:
            return order.counted, False
        key = (order.customer_id, order.currency)
        before = self._profiles.get(key)
        profile = Profile(
            order.customer_id,
            order.currency,
            (before.orders_count if before else 0) + 1,
            (before.lifetime_value_minor if before else 0) + order.total_minor,
            at,
        )
        self._profiles[key] = profile
        self._orders[order_id] = replace(order, counted=profile)
        return profile, True

    async def profile(self, customer_id: str, currency: str) -> Profile | None:
        return self._profiles.get((customer_id, currency))
