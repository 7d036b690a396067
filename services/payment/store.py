"""Payment state: each order's payment intent and what became of it (charge, decline, refund),
and each return's refund from its order's charge.

Handlers see the :class:`PaymentStore` protocol. :class:`PostgresPaymentStore` runs inside the
delivery's transaction; :class:`InMemoryPaymentStore` backs the unit tests.
``tests/integration/services/test_stores.py`` runs one contract suite against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

from events.database import Connection
from events.locks import KeyLocks

Outcome = Literal["charged", "declined", "none"]
"""``none``: a refund came before any charge; the order is closed without one."""

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.intents (
    order_id     text   PRIMARY KEY,
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    currency     text   NOT NULL,
    token        text   NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.payments (
    order_id       text        PRIMARY KEY,
    outcome        text        NOT NULL CHECK (outcome IN ('charged', 'declined', 'none')),
    payment_id     text,
    amount_minor   bigint      NOT NULL CHECK (amount_minor >= 0),
    currency       text        NOT NULL,
    attempt        int         NOT NULL DEFAULT 1,
    decline_reason text,
    decided_at     timestamptz NOT NULL,
    refunded_at    timestamptz,
    -- Money goes back at most once per order.
    refund_count   int         NOT NULL DEFAULT 0 CHECK (refund_count BETWEEN 0 AND 1),
    CHECK ((outcome = 'charged') = (payment_id IS NOT NULL))
);
-- A return's refund from its order's charge; outcome NULL until inventory restocked it.
CREATE TABLE IF NOT EXISTS {schema}.return_refunds (
    return_id        text        PRIMARY KEY,
    order_id         text        NOT NULL,
    amount_minor     bigint      NOT NULL CHECK (amount_minor >= 0),
    currency         text        NOT NULL,
    outcome          text        CHECK (outcome IN ('refunded', 'declined')),
    refund_id        text,
    payment_id       text,
    reason           text,
    refundable_minor bigint,
    decided_at       timestamptz,
    CHECK ((outcome = 'refunded') = (refund_id IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS return_refunds_order_id ON {schema}.return_refunds (order_id);
"""
"""The payment service's tables; ``{schema}`` stands for the service's schema."""


@dataclass(frozen=True, slots=True)
class Intent:
    """What ``order.placed`` said about paying for the order."""

    order_id: str
    amount_minor: int
    currency: str
    token: str


@dataclass(frozen=True, slots=True)
class Payment:
    """The outcome for one order. ``refunded_at`` set means closed: never charge it again."""

    order_id: str
    outcome: Outcome
    payment_id: str | None
    amount_minor: int
    currency: str
    attempt: int
    decided_at: datetime
    decline_reason: str | None = None
    refunded_at: datetime | None = None
    refund_count: int = 0


@dataclass(frozen=True, slots=True)
class ChargeSummary:
    """One order's charge, for the invariant "charged at most once, refunded at most once"."""

    payment_id: str
    amount_minor: int
    refunded: bool
    refund_count: int


@dataclass(frozen=True, slots=True)
class ReturnRefund:
    """A return's refund: what ``return.requested`` asks, then what payment decided."""

    return_id: str
    order_id: str
    amount_minor: int
    currency: str
    outcome: Literal["refunded", "declined"] | None = None
    refund_id: str | None = None
    payment_id: str | None = None
    reason: str | None = None
    refundable_minor: int | None = None
    decided_at: datetime | None = None


class PaymentStore(Protocol):
    """The operations the payment handlers need."""

    async def lock_order(self, order_id: str) -> None:
        """Serialize the rest of this transaction with every other one on the same order."""

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        """:meth:`lock_order` each of ``order_ids``, at once (a batch's, before its handlers)."""

    async def save_intent(self, intent: Intent) -> bool:
        """Remember the intent; False (and nothing changed) when one was already there."""

    async def intent(self, order_id: str) -> Intent | None:
        """The order's payment intent, if ``order.placed`` was seen."""

    async def payment(self, order_id: str) -> Payment | None:
        """What became of the order's payment, if anything."""

    async def payment_and_intent(self, order_id: str) -> tuple[Payment | None, Intent | None]:
        """:meth:`payment` and :meth:`intent` of the order, read together (a charge needs
        both)."""

    async def record_charge(
        self,
        order_id: str,
        payment_id: str,
        amount_minor: int,
        currency: str,
        attempt: int,
        at: datetime,
    ) -> Payment:
        """Record a charge (the order must have no payment outcome yet)."""

    async def record_decline(
        self, order_id: str, reason: str, currency: str, at: datetime
    ) -> Payment:
        """Record a declined charge (the order must have no payment outcome yet)."""

    async def record_refund(
        self, order_id: str, *, executed: bool, currency: str, at: datetime
    ) -> Payment:
        """Close the order; ``executed``: money was given back (counted, at most once).

        With no outcome yet, records outcome ``none`` so the order is never charged.
        """

    async def charges(self) -> dict[str, ChargeSummary]:
        """Every charged order's charge and refunds (the invariant query)."""

    async def save_return_refund(self, request: ReturnRefund) -> bool:
        """Remember what a return asks back; False (nothing changed) when already there."""

    async def return_refund(self, return_id: str) -> ReturnRefund | None:
        """The return's refund request and, once decided, its outcome."""

    async def returned_minor(self, order_id: str) -> int:
        """What the order's returns were refunded so far."""

    async def record_return_refund(self, decided: ReturnRefund) -> ReturnRefund:
        """Record the decision on a return's refund (it must be undecided)."""


_PAYMENT_COLUMNS = (
    "order_id, outcome, payment_id, amount_minor, currency, attempt, decided_at,"
    " decline_reason, refunded_at, refund_count"
)
_PAYMENT_FIELDS = _PAYMENT_COLUMNS.split(", ")
_PAYMENT_OF_P = ", ".join(f"p.{c}" for c in _PAYMENT_FIELDS)


_RETURN_REFUND_COLUMNS = (
    "return_id, order_id, amount_minor, currency, outcome, refund_id, payment_id, reason,"
    " refundable_minor, decided_at"
)


class PostgresPaymentStore:
    """:class:`PaymentStore` on the delivery transaction's connection."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.locks = KeyLocks(conn, schema)

    async def lock_order(self, order_id: str) -> None:
        await self.locks.lock(order_id)

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        await self.locks.lock_all(order_ids)

    async def save_intent(self, intent: Intent) -> bool:
        inserted = await self.conn.fetchval(
            f"INSERT INTO {self.schema}.intents (order_id, amount_minor, currency, token)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING RETURNING true",
            intent.order_id,
            intent.amount_minor,
            intent.currency,
            intent.token,
        )
        return bool(inserted)

    async def intent(self, order_id: str) -> Intent | None:
        row = await self.conn.fetchrow(
            f"SELECT order_id, amount_minor, currency, token FROM {self.schema}.intents"
            " WHERE order_id = $1",
            order_id,
        )
        return Intent(**dict(row)) if row else None

    async def payment(self, order_id: str) -> Payment | None:
        row = await self.conn.fetchrow(
            f"SELECT {_PAYMENT_COLUMNS} FROM {self.schema}.payments WHERE order_id = $1",
            order_id,
        )
        return Payment(**dict(row)) if row else None

    async def payment_and_intent(self, order_id: str) -> tuple[Payment | None, Intent | None]:
        row = await self.conn.fetchrow(
            f"SELECT {_PAYMENT_OF_P}, i.order_id AS intent_of, i.amount_minor AS intent_amount,"
            " i.currency AS intent_currency, i.token AS intent_token"
            " FROM (SELECT $1::text AS key) AS k"
            f" LEFT JOIN {self.schema}.payments AS p ON p.order_id = k.key"
            f" LEFT JOIN {self.schema}.intents AS i ON i.order_id = k.key",
            order_id,
        )
        assert row is not None  # one row for the key, whatever the joins found
        payment = (
            Payment(**{c: row[c] for c in _PAYMENT_FIELDS}) if row["order_id"] is not None else None
        )
        intent = (
            Intent(order_id, row["intent_amount"], row["intent_currency"], row["intent_token"])
            if row["intent_of"] is not None
            else None
        )
        return payment, intent

    async def _insert(self, payment: Payment) -> Payment:
        await self.conn.execute(
            f"INSERT INTO {self.schema}.payments ({_PAYMENT_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            payment.order_id,
            payment.outcome,
            payment.payment_id,
            payment.amount_minor,
            payment.currency,
            payment.attempt,
            payment.decided_at,
            payment.decline_reason,
            payment.refunded_at,
            payment.refund_count,
        )
        return payment

    async def record_charge(
        self,
        order_id: str,
        payment_id: str,
        amount_minor: int,
        currency: str,
        attempt: int,
        at: datetime,
    ) -> Payment:
        return await self._insert(
            Payment(order_id, "charged", payment_id, amount_minor, currency, attempt, at)
        )

    async def record_decline(
        self, order_id: str, reason: str, currency: str, at: datetime
    ) -> Payment:
        return await self._insert(
            Payment(order_id, "declined", None, 0, currency, 1, at, decline_reason=reason)
        )

    async def record_refund(
        self, order_id: str, *, executed: bool, currency: str, at: datetime
    ) -> Payment:
        row = await self.conn.fetchrow(
            f"UPDATE {self.schema}.payments"
            " SET refunded_at = coalesce(refunded_at, $2), refund_count = refund_count + $3"
            f" WHERE order_id = $1 RETURNING {_PAYMENT_COLUMNS}",
            order_id,
            at,
            int(executed),
        )
        if row is not None:
            return Payment(**dict(row))
        return await self._insert(
            Payment(order_id, "none", None, 0, currency, 1, at, refunded_at=at)
        )

    async def charges(self) -> dict[str, ChargeSummary]:
        rows = await self.conn.fetch(
            f"SELECT order_id, payment_id, amount_minor, refund_count"
            f" FROM {self.schema}.payments WHERE outcome = 'charged' ORDER BY order_id"
        )
        return {
            row["order_id"]: ChargeSummary(
                row["payment_id"],
                row["amount_minor"],
                row["refund_count"] > 0,
                row["refund_count"],
            )
            for row in rows
        }

    async def save_return_refund(self, request: ReturnRefund) -> bool:
        inserted = await self.conn.fetchval(
            f"INSERT INTO {self.schema}.return_refunds"
            " (return_id, order_id, amount_minor, currency) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (return_id) DO NOTHING RETURNING true",
            request.return_id,
            request.order_id,
            request.amount_minor,
            request.currency,
        )
        return bool(inserted)

    async def return_refund(self, return_id: str) -> ReturnRefund | None:
        row = await self.conn.fetchrow(
            f"SELECT {_RETURN_REFUND_COLUMNS} FROM {self.schema}.return_refunds"
            " WHERE return_id = $1",
            return_id,
        )
        return ReturnRefund(**dict(row)) if row else None

    async def returned_minor(self, order_id: str) -> int:
        total = await self.conn.fetchval(
            f"SELECT coalesce(sum(amount_minor), 0) FROM {self.schema}.return_refunds"
            " WHERE order_id = $1 AND outcome = 'refunded'",
            order_id,
        )
        return int(total)

    async def record_return_refund(self, decided: ReturnRefund) -> ReturnRefund:
        d = decided
        row = await self.conn.fetchrow(
            f"UPDATE {self.schema}.return_refunds SET outcome = $2, refund_id = $3,"
            " payment_id = $4, reason = $5, refundable_minor = $6, decided_at = $7"
            f" WHERE return_id = $1 AND outcome IS NULL RETURNING {_RETURN_REFUND_COLUMNS}",
            d.return_id,
            d.outcome,
            d.refund_id,
            d.payment_id,
            d.reason,
            d.refundable_minor,
            d.decided_at,
        )
        if row is None:
            raise ValueError(f"return {d.return_id} is unknown or already decided")
        return ReturnRefund(**dict(row))


class InMemoryPaymentStore:
    """:class:`PaymentStore` in dictionaries, for unit tests (single task, no rollback)."""

    def __init__(self) -> None:
        self._intents: dict[str, Intent] = {}
        self._payments: dict[str, Payment] = {}
        self._return_refunds: dict[str, ReturnRefund] = {}

    async def lock_order(self, order_id: str) -> None:
        # One task at a time touches the dictionaries; there is nothing to serialize.
        return None

    async def lock_orders(self, order_ids: Sequence[str]) -> None:
        return None

    async def save_intent(self, intent: Intent) -> bool:
        if intent.order_id in self._intents:
            return False
        self._intents[intent.order_id] = intent
        return True

    async def intent(self, order_id: str) -> Intent | None:
        return self._intents.get(order_id)

    async def payment(self, order_id: str) -> Payment | None:
        return self._payments.get(order_id)

    async def payment_and_intent(self, order_id: str) -> tuple[Payment | None, Intent | None]:
        return self._payments.get(order_id), self._intents.get(order_id)

    def _insert(self, payment: Payment) -> Payment:
        if payment.order_id in self._payments:
            raise ValueError(f"order {payment.order_id} already has a payment outcome")
        self._payments[payment.order_id] = payment
        return payment

    async def record_charge(
        self,
        order_id: str,
        payment_id: str,
        amount_minor: int,
        currency: str,
        attempt: int,
        at: datetime,
    ) -> Payment:
        return self._insert(
            Payment(order_id, "charged", payment_id, amount_minor, currency, attempt, at)
        )

    async def record_decline(
        self, order_id: str, reason: str, currency: str, at: datetime
    ) -> Payment:
        return self._insert(
            Payment(order_id, "declined", None, 0, currency, 1, at, decline_reason=reason)
        )

    async def record_refund(
        self, order_id: str, *, executed: bool, currency: str, at: datetime
    ) -> Payment:
        current = self._payments.get(order_id)
        if current is None:
            return self._insert(Payment(order_id, "none", None, 0, currency, 1, at, refunded_at=at))
        count = current.refund_count + int(executed)
        if count > 1:
            raise ValueError(f"order {order_id} would be refunded twice")
        updated = replace(current, refunded_at=current.refunded_at or at, refund_count=count)
        self._payments[order_id] = updated
        return updated

    async def charges(self) -> dict[str, ChargeSummary]:
        return {
            order_id: ChargeSummary(
                p.payment_id, p.amount_minor, p.refund_count > 0, p.refund_count
            )
            for order_id, p in sorted(self._payments.items())
            if p.outcome == "charged" and p.payment_id is not None
        }

    async def save_return_refund(self, request: ReturnRefund) -> bool:
        if request.return_id in self._return_refunds:
            return False
        self._return_refunds[request.return_id] = request
        return True

    async def return_refund(self, return_id: str) -> ReturnRefund | None:
        return self._return_refunds.get(return_id)

    async def returned_minor(self, order_id: str) -> int:
        return sum(
            r.amount_minor
            for r in self._return_refunds.values()
            if r.order_id == order_id and r.outcome == "refunded"
        )

    async def record_return_refund(self, decided: ReturnRefund) -> ReturnRefund:
        current = self._return_refunds.get(decided.return_id)
        if current is None or current.outcome is not None:
            raise ValueError(f"return {decided.return_id} is unknown or already decided")
        self._return_refunds[decided.return_id] = decided
        return decided
