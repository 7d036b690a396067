"""What the peers' implementations share: the order as a workflow input, the per-service state
(the same tables and idempotency rules as Choreo's services), its operations and the invariants.

Every operation runs inside a transaction the caller opened (a DBOS datasource transaction, or
a SQLAlchemy transaction in a Temporal activity) and is idempotent by order id, as Choreo's
handlers are: a second call finds the first call's row and answers from it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from contracts.parts import Address, ReservedItem
from contracts.samples import scenario_order
from services.crm.provider import SimulatedCrm
from services.email.provider import SimulatedMailer
from services.payment.provider import SimulatedGateway
from services.shipping.provider import SimulatedCarrier

AMPLE_STOCK = 1_000_000_000
SCARCE_SKUS = {"SKU-RARE-VASE"}
"""Kept at their seeded stock, as ``choreo bench`` does, so ``out_of_stock`` still runs out."""
APPROVAL_THRESHOLD_MINOR = 100_000
"""Totals at or above it wait for a person (Choreo's ``approval_threshold_minor`` default)."""
CONFIRMATION = "order_confirmation"
CANCELLATION = "order_cancelled"

DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.stock (
    sku       text PRIMARY KEY,
    seeded    bigint NOT NULL CHECK (seeded >= 0),
    available bigint NOT NULL CHECK (available >= 0),
    reserved  bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    shipped   bigint NOT NULL DEFAULT 0 CHECK (shipped >= 0),
    CHECK (available + reserved + shipped = seeded)
);
CREATE TABLE IF NOT EXISTS {schema}.reservations (
    order_id       text PRIMARY KEY,
    reservation_id text,
    status         text NOT NULL CHECK (status IN ('reserved', 'shipped', 'released', 'failed')),
    reason         text,
    skus           text[] NOT NULL,
    quantities     int[]  NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.payments (
    order_id     text PRIMARY KEY,
    outcome      text NOT NULL CHECK (outcome IN ('charged', 'declined', 'none')),
    payment_id   text,
    amount_minor bigint NOT NULL,
    currency     text NOT NULL,
    decided_at   timestamptz NOT NULL DEFAULT now(),
    refunded_at  timestamptz,
    refund_count int NOT NULL DEFAULT 0 CHECK (refund_count BETWEEN 0 AND 1)
);
CREATE TABLE IF NOT EXISTS {schema}.shipments (
    order_id     text PRIMARY KEY,
    outcome      text NOT NULL CHECK (outcome IN ('scheduled', 'failed', 'none')),
    shipment_id  text,
    carrier      text,
    reason       text,
    decided_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz
);
CREATE TABLE IF NOT EXISTS {schema}.crm_customers (
    customer_id          text NOT NULL,
    currency             text NOT NULL,
    orders_count         int NOT NULL,
    lifetime_value_minor bigint NOT NULL,
    PRIMARY KEY (customer_id, currency)
);
CREATE TABLE IF NOT EXISTS {schema}.crm_counted (
    order_id     text PRIMARY KEY,
    orders_count int NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.sent_emails (
    order_id   text NOT NULL,
    template   text NOT NULL,
    message_id text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, template)
);
"""
"""A peer's tables, one schema per run (``{schema}``): Choreo's five services' state, with the
same names where Choreo has the same thing (``stock``, ``reservations``, ``payments``)."""


@dataclass(frozen=True)
class PeerOrder:
    """An order as a workflow input: what ``order.placed`` carries to Choreo's services."""

    order_id: str
    scenario: str
    customer_id: str
    email: str
    name: str | None
    skus: list[str]
    quantities: list[int]
    total_minor: int
    currency: str
    token: str
    recipient: str
    line1: str
    city: str
    postal_code: str
    country_code: str

    @property
    def needs_approval(self) -> bool:
        return self.total_minor >= APPROVAL_THRESHOLD_MINOR


def peer_order(scenario: str, order_id: str) -> PeerOrder:
    """The sample order of ``scenario`` (:func:`contracts.samples.scenario_order`)."""
    placed = scenario_order(scenario)
    wanted: Counter[str] = Counter()
    for item in placed.items:
        wanted[item.sku] += item.quantity
    return PeerOrder(
        order_id=order_id,
        scenario=scenario,
        customer_id=placed.customer_id,
        email=placed.customer_email,
        name=placed.customer_name,
        skus=sorted(wanted),
        quantities=[wanted[sku] for sku in sorted(wanted)],
        total_minor=placed.total_minor,
        currency=placed.currency,
        token=placed.payment_token,
        recipient=placed.shipping_address.recipient,
        line1=placed.shipping_address.line1,
        city=placed.shipping_address.city,
        postal_code=placed.shipping_address.postal_code,
        country_code=placed.shipping_address.country_code,
    )


def parcel_of(order: PeerOrder) -> tuple[Address, tuple[ReservedItem, ...]]:
    """Where the order goes and what is in the box, as the carrier takes them."""
    address = Address(
        recipient=order.recipient,
        line1=order.line1,
        city=order.city,
        postal_code=order.postal_code,
        country_code=order.country_code,
    )
    items = tuple(
        ReservedItem(sku=s, quantity=q) for s, q in zip(order.skus, order.quantities, strict=True)
    )
    return address, items


def seed_stock(default: dict[str, int]) -> dict[str, int]:
    """The default stock with every plentiful SKU raised to :data:`AMPLE_STOCK`."""
    return {sku: n if sku in SCARCE_SKUS else AMPLE_STOCK for sku, n in default.items()}


class Tx(Protocol):
    """A connection or session inside an open transaction (SQLAlchemy's async API)."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...


async def _rows(tx: Tx, sql: str, **params: Any) -> list[Any]:
    return list((await tx.execute(sa.text(sql), params)).mappings().all())


async def _row(tx: Tx, sql: str, **params: Any) -> Any | None:
    rows = await _rows(tx, sql, **params)
    return rows[0] if rows else None


async def _do(tx: Tx, sql: str, **params: Any) -> None:
    await tx.execute(sa.text(sql), params)


# --------------------------------------------------------------------------- inventory


async def reserve(tx: Tx, schema: str, order: PeerOrder) -> tuple[bool, str]:
    """Hold every line or nothing: ``(True, reservation id)`` or ``(False, reason)``."""
    found = await _row(
        tx,
        f"SELECT status, reservation_id, reason FROM {schema}.reservations WHERE order_id = :o",
        o=order.order_id,
    )
    if found is not None:
        ok = found["status"] != "failed"
        return ok, found["reservation_id"] if ok else found["reason"]
    # Locked in sku order, so two orders on the same SKUs never wait on each other in a cycle.
    rows = await _rows(
        tx,
        f"SELECT sku, available FROM {schema}.stock WHERE sku = ANY(:skus) ORDER BY sku FOR UPDATE",
        skus=order.skus,
    )
    available = {r["sku"]: r["available"] for r in rows}
    lines = zip(order.skus, order.quantities, strict=True)
    short = [sku for sku, qty in lines if available.get(sku, 0) < qty]
    status, reason = ("failed", "out_of_stock") if short else ("reserved", None)
    if not short:
        await _do(
            tx,
            f"UPDATE {schema}.stock AS s SET available = s.available - w.qty,"
            " reserved = s.reserved + w.qty"
            " FROM unnest(CAST(:skus AS text[]), CAST(:qtys AS int[])) AS w(sku, qty)"
            " WHERE s.sku = w.sku",
            skus=order.skus,
            qtys=order.quantities,
        )
    reservation_id = None if short else f"res-{order.order_id}"
    await _do(
        tx,
        f"INSERT INTO {schema}.reservations"
        " (order_id, reservation_id, status, reason, skus, quantities)"
        " VALUES (:o, :r, :status, :reason, :skus, :qtys)",
        o=order.order_id,
        r=reservation_id,
        status=status,
        reason=reason,
        skus=order.skus,
        qtys=order.quantities,
    )
    return (False, "out_of_stock") if short else (True, f"res-{order.order_id}")


async def _move(tx: Tx, schema: str, order_id: str, source: str, target: str) -> bool:
    """Move the order's units from ``source`` to ``target``; False when they are not there."""
    found = await _row(
        tx,
        f"SELECT status, skus, quantities FROM {schema}.reservations WHERE order_id = :o"
        " FOR UPDATE",
        o=order_id,
    )
    if found is None or found["status"] != source:
        return False
    # Locked in sku order first, as a hold locks them (and as Choreo's inventory does): an
    # UPDATE locks its rows in the join's order, which deadlocked against concurrent holds.
    await _rows(
        tx,
        f"SELECT sku FROM {schema}.stock WHERE sku = ANY(:skus) ORDER BY sku FOR UPDATE",
        skus=found["skus"],
    )
    await _do(
        tx,
        f"UPDATE {schema}.stock AS s SET {source} = s.{source} - w.qty,"
        f" {target} = s.{target} + w.qty"
        " FROM unnest(CAST(:skus AS text[]), CAST(:qtys AS int[])) AS w(sku, qty)"
        " WHERE s.sku = w.sku",
        skus=found["skus"],
        qtys=found["quantities"],
    )
    status = "shipped" if target == "shipped" else "released"
    await _do(
        tx,
        f"UPDATE {schema}.reservations SET status = :s, updated_at = now() WHERE order_id = :o",
        s=status,
        o=order_id,
    )
    return True


async def release(tx: Tx, schema: str, order_id: str) -> None:
    """Put back whatever the order holds (reserved or shipped units); with no record, a marker
    that stops a late reserve."""
    if await _move(tx, schema, order_id, "reserved", "available"):
        return
    if await _move(tx, schema, order_id, "shipped", "available"):
        return
    await _do(
        tx,
        f"INSERT INTO {schema}.reservations (order_id, status, skus, quantities)"
        " VALUES (:o, 'released', '{{}}', '{{}}') ON CONFLICT (order_id) DO NOTHING",
        o=order_id,
    )


async def ship_stock(tx: Tx, schema: str, order_id: str) -> bool:
    """The carrier takes the reserved units: count them as shipped (once)."""
    return await _move(tx, schema, order_id, "reserved", "shipped")


# --------------------------------------------------------------------------- payment


async def payment_of(tx: Tx, schema: str, order_id: str) -> dict[str, Any] | None:
    """The order's recorded payment outcome, if any."""
    row = await _row(
        tx,
        f"SELECT outcome, payment_id, amount_minor, currency, refund_count"
        f" FROM {schema}.payments WHERE order_id = :o FOR UPDATE",
        o=order_id,
    )
    return dict(row) if row is not None else None


async def record_payment(
    tx: Tx, schema: str, order: PeerOrder, outcome: str, payment_id: str | None
) -> None:
    """Record a charge or a decline (the first record wins)."""
    await _do(
        tx,
        f"INSERT INTO {schema}.payments (order_id, outcome, payment_id, amount_minor, currency)"
        " VALUES (:o, :outcome, :p, :a, :c) ON CONFLICT (order_id) DO NOTHING",
        o=order.order_id,
        outcome=outcome,
        p=payment_id,
        a=order.total_minor if outcome == "charged" else 0,
        c=order.currency,
    )


async def record_refund(tx: Tx, schema: str, order: PeerOrder, executed: bool) -> None:
    """Close the order's payment; ``executed``: money went back (counted once at most)."""
    updated = await _rows(
        tx,
        f"UPDATE {schema}.payments SET refunded_at = coalesce(refunded_at, now()),"
        " refund_count = CASE WHEN refunded_at IS NULL THEN refund_count + :n"
        " ELSE refund_count END WHERE order_id = :o RETURNING order_id",
        o=order.order_id,
        n=int(executed),
    )
    if not updated:
        await _do(
            tx,
            f"INSERT INTO {schema}.payments"
            " (order_id, outcome, amount_minor, currency, refunded_at)"
            " VALUES (:o, 'none', 0, :c, now()) ON CONFLICT (order_id) DO NOTHING",
            o=order.order_id,
            c=order.currency,
        )


# --------------------------------------------------------------------------- shipping, CRM, email


async def shipment_of(tx: Tx, schema: str, order_id: str) -> dict[str, Any] | None:
    """The order's recorded shipment outcome, if any."""
    row = await _row(
        tx,
        f"SELECT outcome, shipment_id, reason, cancelled_at FROM {schema}.shipments"
        " WHERE order_id = :o FOR UPDATE",
        o=order_id,
    )
    return dict(row) if row is not None else None


async def record_shipment(
    tx: Tx, schema: str, order_id: str, shipment_id: str | None, carrier: str | None, reason: str
) -> None:
    """Record a booking (``shipment_id`` set) or a refusal (the first record wins)."""
    await _do(
        tx,
        f"INSERT INTO {schema}.shipments (order_id, outcome, shipment_id, carrier, reason)"
        " VALUES (:o, :outcome, :s, :carrier, :reason) ON CONFLICT (order_id) DO NOTHING",
        o=order_id,
        outcome="scheduled" if shipment_id else "failed",
        s=shipment_id,
        carrier=carrier,
        reason=reason or None,
    )


async def record_shipment_cancelled(tx: Tx, schema: str, order_id: str) -> None:
    """Close the order's shipment (a marker when there was none)."""
    await _do(
        tx,
        f"INSERT INTO {schema}.shipments (order_id, outcome, cancelled_at)"
        " VALUES (:o, 'none', now()) ON CONFLICT (order_id)"
        " DO UPDATE SET cancelled_at = coalesce(shipments.cancelled_at, now())",
        o=order_id,
    )


async def count_order(tx: Tx, schema: str, order: PeerOrder) -> tuple[int, int, bool]:
    """Add the order to its customer's profile once: (orders count, lifetime value, counted
    now)."""
    claimed = await _row(
        tx,
        f"INSERT INTO {schema}.crm_counted (order_id, orders_count) VALUES (:o, 0)"
        " ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
        o=order.order_id,
    )
    profile = await _row(
        tx,
        f"INSERT INTO {schema}.crm_customers AS c"
        " (customer_id, currency, orders_count, lifetime_value_minor)"
        " VALUES (:c, :cur, :n, :v) ON CONFLICT (customer_id, currency) DO UPDATE"
        " SET orders_count = c.orders_count + excluded.orders_count,"
        " lifetime_value_minor = c.lifetime_value_minor + excluded.lifetime_value_minor"
        " RETURNING orders_count, lifetime_value_minor",
        c=order.customer_id,
        cur=order.currency,
        n=1 if claimed else 0,
        v=order.total_minor if claimed else 0,
    )
    assert profile is not None
    return profile["orders_count"], profile["lifetime_value_minor"], claimed is not None


async def sent_email(tx: Tx, schema: str, order_id: str, template: str) -> str | None:
    """The message id of the order's mail of ``template``, if it was sent."""
    row = await _row(
        tx,
        f"SELECT message_id FROM {schema}.sent_emails WHERE order_id = :o AND template = :t",
        o=order_id,
        t=template,
    )
    return row["message_id"] if row is not None else None


async def record_email(tx: Tx, schema: str, order_id: str, template: str, message_id: str) -> None:
    """Record a sent mail (one per order and template)."""
    await _do(
        tx,
        f"INSERT INTO {schema}.sent_emails (order_id, template, message_id)"
        " VALUES (:o, :t, :m) ON CONFLICT (order_id, template) DO NOTHING",
        o=order_id,
        t=template,
        m=message_id,
    )


def email_text(template: str, order: PeerOrder, detail: str) -> tuple[str, str]:
    """Subject and body, as Choreo's email service renders them."""
    greeting = f"Hello {order.name}," if order.name else "Hello,"
    if template == CONFIRMATION:
        subject = f"Your order {order.order_id} is on its way"
        return subject, f"{greeting}\n\nyour order {order.order_id} has shipped. {detail}\n"
    subject = f"Your order {order.order_id} was cancelled"
    return subject, f"{greeting}\n\nwe had to cancel your order {order.order_id} ({detail}).\n"


@dataclass
class Providers:
    """The simulated gateway, carrier, CRM and mailer of Choreo's services, with the same
    deterministic triggers (``tok_declined``, ``tok_flaky``, ``AQ``, ``bounce.example``...)."""

    gateway: SimulatedGateway = field(default_factory=SimulatedGateway)
    carrier: SimulatedCarrier = field(default_factory=SimulatedCarrier)
    crm: SimulatedCrm = field(default_factory=SimulatedCrm)
    mailer: SimulatedMailer = field(default_factory=SimulatedMailer)


GATEWAY_TIMEOUT_S = 2.0
"""A gateway call longer than this is given up and retried (Choreo's ``gateway_timeout_s``)."""
PAYMENT_DEADLINE_S = 30.0
"""How long payment may take in all before the saga compensates (Choreo's payment deadline)."""
CALL_TIMEOUT_S = 5.0
"""Carrier, CRM and mailer calls (Choreo's ``carrier_timeout_s`` and ``timeout_s``)."""
APPROVAL_TIMEOUT_S = 86_400.0
"""How long a large order waits for a person (Choreo's ``approval_timeout``)."""
