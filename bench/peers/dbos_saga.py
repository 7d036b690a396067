"""The order saga on DBOS Transact: one durable workflow per order, on the stack's PostgreSQL.

Following DBOS's documentation: the workflow (``order_saga``) calls **transactions** for the
per-service state (an async SQLAlchemy datasource; each one commits its checkpoint in the
same transaction as its writes) and **steps** for the simulated providers (retried on
transient errors, with a timeout); orders are enqueued on a DBOS **queue** (flow control:
``worker_concurrency`` workflows at once) under their order id as **workflow id**
(idempotency: enqueuing the same order twice starts one workflow). A large order waits for
its approval as a workflow message (``DBOS.recv``); compensations are kept in a list and run
newest first.

Run as a child process of :mod:`bench.peers.runner`:
``python -m bench.peers.dbos_saga '<LoadConfig JSON>'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from dbos import DBOS, AsyncSQLAlchemyDatasource, DBOSConfig, Queue, SetWorkflowID
from dbos._error import DBOSMaxStepRetriesExceeded, DBOSStepTimeoutError

from bench.peers import common
from bench.peers.common import (
    CALL_TIMEOUT_S,
    CANCELLATION,
    CONFIRMATION,
    GATEWAY_TIMEOUT_S,
    PeerOrder,
    Providers,
)
from bench.peers.load import LoadConfig, check_invariants, main_of, prepare_schema
from events.errors import TransientError
from services.payment.provider import Declined
from services.shipping.provider import Refused

QUEUE = "orders"
WORKER_CONCURRENCY = 100
"""Workflows this process runs at once (as Temporal's worker runs 100 tasks at once)."""
QUEUE_POLLING_S = 0.05
"""How often the queue is polled for new workflows: DBOS's default (1 s) would dominate the
latency of a saga that takes tens of milliseconds."""
APPROVAL_TOPIC = "approval"
Undo = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    """What the workflow's functions need at run time: set before DBOS is launched."""

    schema: str
    providers: Providers
    datasource: AsyncSQLAlchemyDatasource
    tx: dict[str, Callable[..., Awaitable[Any]]]
    finished: Callable[[str, str], None]


_runtime: Runtime | None = None


def _rt() -> Runtime:
    assert _runtime is not None, "the DBOS saga's runtime is not set up"
    return _runtime


def _retryable(error: BaseException) -> bool:
    return isinstance(error, TransientError | DBOSStepTimeoutError | TimeoutError)


# --------------------------------------------------------------------------- transactions
# Plain coroutines here; :func:`_transactions` wraps each in the datasource's transaction
# (READ COMMITTED with explicit row locks, as Choreo's services run theirs).


async def _reserve(order: PeerOrder) -> tuple[bool, str]:
    return await common.reserve(_rt().datasource.sql_session(), _rt().schema, order)


async def _release(order_id: str) -> None:
    await common.release(_rt().datasource.sql_session(), _rt().schema, order_id)


async def _ship_stock(order_id: str) -> bool:
    return await common.ship_stock(_rt().datasource.sql_session(), _rt().schema, order_id)


async def _record_payment(order: PeerOrder, outcome: str, payment_id: str | None) -> None:
    session = _rt().datasource.sql_session()
    await common.record_payment(session, _rt().schema, order, outcome, payment_id)


async def _record_refund(order: PeerOrder, executed: bool) -> None:
    await common.record_refund(_rt().datasource.sql_session(), _rt().schema, order, executed)


async def _record_shipment(order_id: str, shipment: str | None, carrier: str, reason: str) -> None:
    session = _rt().datasource.sql_session()
    await common.record_shipment(session, _rt().schema, order_id, shipment, carrier, reason)


async def _record_shipment_cancelled(order_id: str) -> None:
    session = _rt().datasource.sql_session()
    await common.record_shipment_cancelled(session, _rt().schema, order_id)


async def _count_order(order: PeerOrder) -> tuple[int, int, bool]:
    return await common.count_order(_rt().datasource.sql_session(), _rt().schema, order)


async def _record_email(order_id: str, template: str, message_id: str) -> None:
    session = _rt().datasource.sql_session()
    await common.record_email(session, _rt().schema, order_id, template, message_id)


def _transactions(ds: AsyncSQLAlchemyDatasource) -> dict[str, Callable[..., Awaitable[Any]]]:
    plain: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {
        "reserve": _reserve,
        "release": _release,
        "ship_stock": _ship_stock,
        "record_payment": _record_payment,
        "record_refund": _record_refund,
        "record_shipment": _record_shipment,
        "record_shipment_cancelled": _record_shipment_cancelled,
        "count_order": _count_order,
        "record_email": _record_email,
    }
    return {
        name: ds.transaction(name=name, isolation_level="READ COMMITTED")(fn)
        for name, fn in plain.items()
    }


# --------------------------------------------------------------------------- steps


@DBOS.step(
    name="charge_card",
    retries_allowed=True,
    max_attempts=5,
    interval_seconds=0.5,
    backoff_rate=2.0,
    should_retry=_retryable,
    timeout_seconds=GATEWAY_TIMEOUT_S,
)
async def charge_card(order: PeerOrder) -> tuple[str, str | None]:
    """Charge under the order id as idempotency key: (``charged``|``declined``, payment id)."""
    result = await _rt().providers.gateway.charge(
        idempotency_key=order.order_id,
        amount_minor=order.total_minor,
        currency=order.currency,
        token=order.token,
    )
    return ("declined", None) if isinstance(result, Declined) else ("charged", result.payment_id)


@DBOS.step(name="refund_card", retries_allowed=True, max_attempts=10, should_retry=_retryable)
async def refund_card(order: PeerOrder) -> bool:
    """Refund whatever was charged under the order id (even a charge answered too late)."""
    refunded = await _rt().providers.gateway.refund(
        idempotency_key=order.order_id,
        payment_id=None,
        amount_minor=order.total_minor,
        currency=order.currency,
    )
    return refunded is not None


@DBOS.step(
    name="book_parcel",
    retries_allowed=True,
    max_attempts=5,
    should_retry=_retryable,
    timeout_seconds=CALL_TIMEOUT_S,
)
async def book_parcel(order: PeerOrder) -> tuple[str | None, str, str]:
    """Book a carrier: (shipment id or None, carrier, refusal reason)."""
    address, items = common.parcel_of(order)
    answer = await _rt().providers.carrier.book(
        reference=order.order_id, address=address, items=items
    )
    if isinstance(answer, Refused):
        return None, "", answer.reason
    return answer.shipment_id, answer.carrier, ""


@DBOS.step(name="cancel_parcel", retries_allowed=True, max_attempts=10, should_retry=_retryable)
async def cancel_parcel(shipment_id: str) -> None:
    await _rt().providers.carrier.cancel(shipment_id=shipment_id)


@DBOS.step(
    name="push_profile",
    retries_allowed=True,
    max_attempts=5,
    should_retry=_retryable,
    timeout_seconds=CALL_TIMEOUT_S,
)
async def push_profile(order: PeerOrder, orders_count: int, lifetime_value: int) -> None:
    await _rt().providers.crm.push_profile(
        customer_id=order.customer_id,
        currency=order.currency,
        orders_count=orders_count,
        lifetime_value_minor=lifetime_value,
    )


@DBOS.step(
    name="send_mail",
    retries_allowed=True,
    max_attempts=5,
    should_retry=_retryable,
    timeout_seconds=CALL_TIMEOUT_S,
)
async def send_mail(order: PeerOrder, template: str, detail: str) -> str:
    subject, body = common.email_text(template, order, detail)
    return await _rt().providers.mailer.send(
        idempotency_key=f"{order.order_id}:{template}", to=order.email, subject=subject, body=body
    )


# --------------------------------------------------------------------------- the workflow


async def _mail(order: PeerOrder, template: str, detail: str) -> bool:
    """Send a mail and record it; False when it could not be sent (the saga goes on)."""
    try:
        message_id = await send_mail(order, template, detail)
    except Exception:
        return False
    await _rt().tx["record_email"](order.order_id, template, message_id)
    return True


async def _crm(order: PeerOrder) -> None:
    count, value, counted_now = await _rt().tx["count_order"](order)
    if counted_now:
        await push_profile(order, count, value)


async def _refund(order: PeerOrder) -> None:
    executed = await refund_card(order)
    await _rt().tx["record_refund"](order, executed)


async def _cancel_shipment(order_id: str, shipment_id: str) -> None:
    await cancel_parcel(shipment_id)
    await _rt().tx["record_shipment_cancelled"](order_id)


# Long: the saga's forward path reads best as one function, step after step.
async def _forward(order: PeerOrder, undo: list[Undo]) -> str:
    """Run the steps; returns ``completed`` or ``cancelled:<reason>``, ``undo`` holding the
    compensations of the steps that took effect."""
    tx = _rt().tx
    reserved, _ = await tx["reserve"](order)
    if not reserved:
        return "cancelled:out_of_stock"
    undo.append(lambda: tx["release"](order.order_id))
    if order.needs_approval:
        decision = await DBOS.recv_async(APPROVAL_TOPIC, timeout_seconds=common.APPROVAL_TIMEOUT_S)
        if decision != "approved":
            return "cancelled:approval_rejected" if decision else "cancelled:approval_timeout"
    try:
        outcome, payment_id = await charge_card(order)
    except (DBOSMaxStepRetriesExceeded, DBOSStepTimeoutError):
        # The gateway may still charge late: refund under the same key, then release.
        undo.append(lambda: _refund(order))
        return "cancelled:payment_timeout"
    await tx["record_payment"](order, outcome, payment_id)
    if outcome != "charged":
        return "cancelled:payment_declined"
    undo.append(lambda: _refund(order))
    shipment_id, carrier, reason = await book_parcel(order)
    await tx["record_shipment"](order.order_id, shipment_id, carrier, reason)
    if shipment_id is None:
        return "cancelled:shipment_failed"
    undo.append(lambda: _cancel_shipment(order.order_id, shipment_id))
    # Inventory, CRM and the confirmation run in parallel, as they react to the same event
    # in Choreo; the mail is optional (its failure is a note, not a cancellation).
    stock: object
    crm: object
    stock, crm, _ = await asyncio.gather(
        tx["ship_stock"](order.order_id),
        _crm(order),
        _mail(order, CONFIRMATION, f"{carrier} delivers it soon."),
        return_exceptions=True,
    )
    if isinstance(stock, BaseException) or isinstance(crm, BaseException):
        return "cancelled:shipment_failed"
    return "completed"


@DBOS.workflow(name="order_saga")
async def order_saga(order: PeerOrder) -> str:
    """The order saga: forward steps, then on a cancellation the compensations newest first
    and the cancellation notice."""
    undo: list[Undo] = []
    outcome = await _forward(order, undo)
    if outcome.startswith("cancelled:"):
        for compensation in reversed(undo):
            await compensation()
        await _mail(order, CANCELLATION, outcome.partition(":")[2].replace("_", " "))
    _rt().finished(order.order_id, outcome)
    return outcome


# --------------------------------------------------------------------------- the process


class DbosDriver:
    """Enqueues orders and hands back, per order, a future of its outcome and end time."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.loop = asyncio.get_running_loop()
        self.pending: dict[str, asyncio.Future[tuple[str, float]]] = {}

    def finished(self, order_id: str, outcome: str) -> None:
        """Called by the workflow as it returns (from whichever thread runs it)."""
        at = time.perf_counter()
        self.loop.call_soon_threadsafe(self._resolve, order_id, outcome, at)

    def _resolve(self, order_id: str, outcome: str, at: float) -> None:
        future = self.pending.pop(order_id, None)
        if future is not None and not future.done():
            future.set_result((outcome, at))

    async def start(self, order: PeerOrder) -> Awaitable[tuple[str, float]]:
        future = self.loop.create_future()
        self.pending[order.order_id] = future
        with SetWorkflowID(order.order_id):
            await self.queue.enqueue_async(order_saga, order)
        if order.needs_approval:
            # As `choreo bench` approves large orders at once.
            await DBOS.send_async(order.order_id, "approved", topic=APPROVAL_TOPIC)
        return future


@contextlib.asynccontextmanager
async def setup(config: LoadConfig) -> AsyncIterator[Any]:
    """Schema, DBOS, datasource, queue; yields (driver, new order id, invariant check)."""
    global _runtime
    await prepare_schema(config.database_url, config.schema)
    dbos_config: DBOSConfig = {
        "name": "choreo-bench-peers",
        "system_database_url": config.database_url,
        "dbos_system_schema": f"{config.schema}_dbos",
        "log_level": "WARNING",
        "application_version": "bench",
    }
    DBOS(config=dbos_config)
    datasource = await AsyncSQLAlchemyDatasource.create(
        config.database_url,
        schema=config.schema,
        # A connection for every workflow the queue runs at once. With 20, a 20/s backlog
        # failed steps that waited past SQLAlchemy's 30 s pool timeout; letting them wait an
        # hour instead hung a 1000-order burst: 20 sessions waited on row locks held by one
        # left idle in its transaction, whose workflow waited for a connection.
        engine_kwargs={"pool_size": WORKER_CONCURRENCY, "max_overflow": 10},
    )
    tx = _transactions(datasource)
    _runtime = Runtime(config.schema, Providers(), datasource, tx, lambda _o, _r: None)
    # Launched from this coroutine, so DBOS runs the queued workflows on this event loop.
    DBOS.launch()
    queue = await DBOS.register_queue_async(
        QUEUE, worker_concurrency=WORKER_CONCURRENCY, polling_interval_sec=QUEUE_POLLING_S
    )
    driver = DbosDriver(queue)
    _runtime.finished = driver.finished

    async def check() -> dict[str, Any]:
        return await check_invariants(config.database_url, config.schema, config.schema)

    try:
        yield driver, lambda: f"ord-{uuid.uuid4().hex[:12]}", check
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    asyncio.run(main_of(LoadConfig.from_json(sys.argv[1].encode()), setup))
