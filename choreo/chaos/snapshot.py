"""The state the invariants judge, read from the services' own tables once the platform is quiet.

Each service's schema is read as it is (payments and intents, reservations and stock,
shipments, sent mails and recipients; return refunds, restocks and pickups), each order's and
return's saga is folded from the coordinator's own log, as the coordinator folds it, and the
dead letters are read from the DLQ topic. The read model is not read, except by the rebuild
that compares it with the log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from choreo.chaos.faults import Injected
from choreo.chaos.orders import PlacedOrder
from choreo.chaos.returns import PlacedReturn
from choreo.client import ChoreoClient
from events.database import Connection, Database, schema_name
from events.personal_data import PostgresKeyring, keys_schema, open_value
from events.settings import Settings
from saga_coordinator import legacy
from saga_coordinator.engine.facts import Fact, StepFailed, TaskDecided
from saga_coordinator.engine.state import fold
from saga_coordinator.store import PostgresSagaStore
from sagas.definition import SagaDefinition
from sagas.order import CONFIRMATION as ORDER_CONFIRMATION
from sagas.order import V1 as ORDER
from sagas.returns import CONFIRMATION as RETURN_CONFIRMATION
from sagas.returns import V1 as RETURN
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
class ReturnView:
    """A return's saga as its coordinator's log says it ended (as :class:`OrderView`)."""

    return_id: str
    scenario: str
    status: str
    cancel_reason: str | None = None
    timed_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class Restock:
    """A return's row in the inventory's ``restocks``: ``restocked``, ``refused`` or ``none``,
    and whether its units were taken out again."""

    outcome: str
    unstocked: bool


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
    """An order's row in the shipping service's ``shipments`` (or a return's in ``pickups``)."""

    outcome: str
    cancelled: bool


@dataclass
class Snapshot:
    """Everything the invariants look at (see :mod:`choreo.chaos.invariants`)."""

    orders: list[OrderView] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    reservations: dict[str, str] = field(default_factory=dict)
    held_elsewhere: dict[str, int] = field(default_factory=dict)
    """Units per SKU that reservations of orders outside the run hold (one waiting for a
    person's approval since before the run, say)."""
    stock: dict[str, Stock] = field(default_factory=dict)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    confirmations: dict[str, int] = field(default_factory=dict)
    recipients: dict[str, str] = field(default_factory=dict)
    returns: list[ReturnView] = field(default_factory=list)
    refunds: dict[str, str | None] = field(default_factory=dict)
    """A return's refund outcome (``refunded``, ``declined``; ``None``: not decided)."""
    restocks: dict[str, Restock] = field(default_factory=dict)
    pickups: dict[str, Shipment] = field(default_factory=dict)
    return_confirmations: dict[str, int] = field(default_factory=dict)
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


def ending(key: str, facts: Sequence[Fact], definition: SagaDefinition) -> tuple[str, str | None]:
    """A saga's status and cancel reason, folded from its facts as the coordinator folds it."""
    state = fold(key, facts)
    return state.status(definition), state.cancel_reason


def order_view(order: PlacedOrder, facts: Sequence[Fact]) -> OrderView:
    """What the invariants need of one saga: its ending and the deadlines that passed."""
    status, reason = ending(order.order_id, facts, ORDER)
    return OrderView(order.order_id, order.scenario, status, reason, deadlines_passed(facts))


def return_view(placed: PlacedReturn, facts: Sequence[Fact]) -> ReturnView:
    """What the invariants need of one return's saga (as :func:`order_view`)."""
    status, reason = ending(placed.return_id, facts, RETURN)
    return ReturnView(placed.return_id, placed.scenario, status, reason, deadlines_passed(facts))


async def read_sagas(
    conn: Connection, settings: Settings, placed: list[PlacedOrder], returns: list[PlacedReturn]
) -> tuple[list[OrderView], list[ReturnView]]:
    """Each placed order's and return's saga, folded from the coordinator's log."""
    store = PostgresSagaStore(conn, schema_name(settings, "saga_coordinator"))

    async def facts(key: str) -> list[Fact]:
        return legacy.read(await store.load(key), SAGAS)

    orders = [order_view(order, await facts(order.order_id)) for order in placed]
    return orders, [return_view(r, await facts(r.return_id)) for r in returns]


async def read_returns(
    conn: Connection, settings: Settings, ids: list[str], snap: Snapshot
) -> None:
    """The rows of the run's returns in the payment, inventory, shipping and email schemas."""
    payment = schema_name(settings, "payment")
    rows = await conn.fetch(
        f"SELECT return_id, outcome FROM {payment}.return_refunds WHERE return_id = ANY($1)", ids
    )
    snap.refunds = {r["return_id"]: r["outcome"] for r in rows}
    inventory = schema_name(settings, "inventory")
    rows = await conn.fetch(
        f"SELECT return_id, outcome, unstocked_at IS NOT NULL AS unstocked"
        f" FROM {inventory}.restocks WHERE return_id = ANY($1)",
        ids,
    )
    snap.restocks = {r["return_id"]: Restock(r["outcome"], r["unstocked"]) for r in rows}
    snap.pickups = await _bookings(conn, settings, "pickups", "return_id", ids)
    snap.return_confirmations = await _mails(conn, settings, RETURN_CONFIRMATION, ids)


async def _bookings(
    conn: Connection, settings: Settings, table: str, key: str, ids: list[str]
) -> dict[str, Shipment]:
    """Shipping's rows of ``ids`` in ``table`` (``shipments``, ``pickups``) by ``key``."""
    rows = await conn.fetch(
        f"SELECT {key} AS key, outcome, cancelled_at IS NOT NULL AS cancelled"
        f" FROM {schema_name(settings, 'shipping')}.{table} WHERE {key} = ANY($1)",
        ids,
    )
    return {r["key"]: Shipment(r["outcome"], r["cancelled"]) for r in rows}


async def _mails(
    conn: Connection, settings: Settings, template: str, ids: list[str]
) -> dict[str, int]:
    """How many mails of ``template`` email sent for each saga of ``ids``."""
    rows = await conn.fetch(
        f"SELECT order_id, count(*) AS n FROM {schema_name(settings, 'email')}.sent_emails"
        " WHERE order_id = ANY($1) AND template = $2 GROUP BY order_id",
        ids,
        template,
    )
    return {r["order_id"]: r["n"] for r in rows}


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
    rows = await conn.fetch(
        f"SELECT l.sku, sum(l.quantity) AS units FROM {inventory}.reservations AS r"
        f" JOIN {inventory}.reservation_lines AS l USING (order_id)"
        " WHERE r.status = 'reserved' AND NOT r.order_id = ANY($1) GROUP BY l.sku",
        ids,
    )
    snap.held_elsewhere = {r["sku"]: r["units"] for r in rows}
    snap.shipments = await _bookings(conn, settings, "shipments", "order_id", ids)
    snap.confirmations = await _mails(conn, settings, ORDER_CONFIRMATION, ids)
    email = schema_name(settings, "email")
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
    settings: Settings,
    db: Database,
    client: ChoreoClient,
    placed: list[PlacedOrder],
    returns: list[PlacedReturn],
) -> Snapshot:
    """Read the snapshot of a quiet platform (the rebuild is added by the caller)."""
    snap = Snapshot()
    async with db.pool.acquire() as conn:
        snap.orders, snap.returns = await read_sagas(conn, settings, placed, returns)
        await read_services(conn, settings, [order.order_id for order in placed], snap)
        await read_returns(conn, settings, [r.return_id for r in returns], snap)
    snap.dead_letters = await read_dead_letters(client)
    return snap
