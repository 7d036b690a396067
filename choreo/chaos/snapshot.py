"""The state the invariants judge, read from the services' own tables once the platform is quiet.

Each service's schema is read as it is (payments and intents, reservations and stock,
shipments, sent mails and recipients), each order's saga is folded from the coordinator's own
log, as the coordinator folds it, and the dead letters are read from the DLQ topic. The read
model is not read, except by the rebuild that compares it with the log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from choreo.chaos.faults import Injected
from choreo.chaos.orders import PlacedOrder
from choreo.client import ChoreoClient
from events.database import Connection, Database, schema_name
from events.personal_data import PostgresKeyring, keys_schema, open_value
from events.settings import Settings
from saga_coordinator import legacy
from saga_coordinator.engine.facts import Fact, StepFailed, TaskDecided
from saga_coordinator.engine.state import fold
from saga_coordinator.store import PostgresSagaStore
from sagas.order import V1 as ORDER
from sagas.shipped import SAGAS


@dataclass(frozen=True)
class OrderView:
    """An order's saga as its coordinator's log says it ended.

    Attributes:
        timed_out: Steps and tasks whose deadline passed (``payment``, ``approval``, ...) and
            cancelled the order (see :func:`deadlines_passed`).
    """

    order_id: str
    scenario: str
    status: str
    cancel_reason: str | None = None
    timed_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class Payment:
    """An order's row in the payment service's ``payments``."""

    outcome: str
    refund_count: int


@dataclass(frozen=True)
class Stock:
    """A SKU's row in the inventory's ``stock``."""

    seeded: int
    available: int
    reserved: int
    shipped: int


@dataclass(frozen=True)
class Shipment:
    """An order's row in the shipping service's ``shipments``."""

    outcome: str
    cancelled: bool


@dataclass
class Snapshot:
    """Everything the invariants look at (see :mod:`choreo.chaos.invariants`)."""

    orders: list[OrderView] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    reservations: dict[str, str] = field(default_factory=dict)
    stock: dict[str, Stock] = field(default_factory=dict)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    confirmations: dict[str, int] = field(default_factory=dict)
    recipients: dict[str, str] = field(default_factory=dict)
    injected: list[Injected] = field(default_factory=list)
    dead_letters: dict[tuple[str, int, int], list[str]] = field(default_factory=dict)
    rebuild_differences: list[str] | None = None


def deadlines_passed(facts: Sequence[Fact]) -> tuple[str, ...]:
    """The steps whose deadline failed them with a cancel reason (a non-critical step's, the
    email's, cancels nothing) and the tasks that timed out, from the saga's facts: the
    folded state forgets a deadline once the late answer arrives."""
    names = {f.step for f in facts if isinstance(f, StepFailed) and f.deadline and f.reason}
    names |= {f.task for f in facts if isinstance(f, TaskDecided) and f.outcome == "timed_out"}
    return tuple(sorted(names))


def order_view(order: PlacedOrder, facts: Sequence[Fact]) -> OrderView:
    """What the invariants need of one saga: its ending, folded as the coordinator folds it,
    and the deadlines that passed."""
    state = fold(order.order_id, facts)
    return OrderView(
        order.order_id,
        order.scenario,
        state.status(ORDER),
        state.cancel_reason,
        deadlines_passed(facts),
    )


async def read_orders(
    conn: Connection, settings: Settings, placed: list[PlacedOrder]
) -> list[OrderView]:
    """Each placed order's saga, folded from the coordinator's log."""
    store = PostgresSagaStore(conn, schema_name(settings, "saga_coordinator"))
    views = []
    for order in placed:
        facts = legacy.read(await store.load(order.order_id), SAGAS)
        views.append(order_view(order, facts))
    return views


async def read_services(
    conn: Connection, settings: Settings, ids: list[str], snap: Snapshot
) -> None:
    """The rows of the run's orders in each service's schema, and the whole stock."""
    payment = schema_name(settings, "payment")
    rows = await conn.fetch(
        f"SELECT order_id, token FROM {payment}.intents WHERE order_id = ANY($1)", ids
    )
    snap.tokens = {r["order_id"]: r["token"] for r in rows}
    rows = await conn.fetch(
        f"SELECT order_id, outcome, refund_count FROM {payment}.payments WHERE order_id = ANY($1)",
        ids,
    )
    snap.payments = {r["order_id"]: Payment(r["outcome"], r["refund_count"]) for r in rows}
    inventory = schema_name(settings, "inventory")
    rows = await conn.fetch(
        f"SELECT order_id, status FROM {inventory}.reservations WHERE order_id = ANY($1)", ids
    )
    snap.reservations = {r["order_id"]: r["status"] for r in rows}
    rows = await conn.fetch(
        f"SELECT sku, seeded, available, reserved, shipped FROM {inventory}.stock"
    )
    snap.stock = {
        r["sku"]: Stock(r["seeded"], r["available"], r["reserved"], r["shipped"]) for r in rows
    }
    shipping = schema_name(settings, "shipping")
    rows = await conn.fetch(
        f"SELECT order_id, outcome, cancelled_at IS NOT NULL AS cancelled"
        f" FROM {shipping}.shipments WHERE order_id = ANY($1)",
        ids,
    )
    snap.shipments = {r["order_id"]: Shipment(r["outcome"], r["cancelled"]) for r in rows}
    email = schema_name(settings, "email")
    rows = await conn.fetch(
        f"SELECT order_id, count(*) AS n FROM {email}.sent_emails"
        " WHERE order_id = ANY($1) AND template = 'order_confirmation' GROUP BY order_id",
        ids,
    )
    snap.confirmations = {r["order_id"]: r["n"] for r in rows}
    rows = await conn.fetch(
        f"SELECT order_id, email FROM {email}.recipients WHERE order_id = ANY($1)", ids
    )
    # Addresses are stored sealed; the invariants ask their domain (bounces), so open them.
    keyring = PostgresKeyring(conn, keys_schema(settings))
    snap.recipients = {
        r["order_id"]: await open_value(keyring, r["email"], "customer_email") for r in rows
    }


async def read_dead_letters(client: ChoreoClient) -> dict[tuple[str, int, int], list[str]]:
    """Every dead letter's reason by the source record it stands for."""
    letters: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    for entry in await client.dead_letters(include_redriven=True):
        letter = entry.letter
        key = (letter.source_topic, letter.source_partition, letter.source_offset)
        letters[key].append(letter.reason)
    return dict(letters)


async def take(
    settings: Settings, db: Database, client: ChoreoClient, placed: list[PlacedOrder]
) -> Snapshot:
    """Read the snapshot of a quiet platform (the rebuild is added by the caller)."""
    snap = Snapshot()
    async with db.pool.acquire() as conn:
        snap.orders = await read_orders(conn, settings, placed)
        await read_services(conn, settings, [order.order_id for order in placed], snap)
    snap.dead_letters = await read_dead_letters(client)
    return snap
