"""What must hold after any chaos: pure checks over a :class:`~choreo.chaos.snapshot.Snapshot`.

Each check returns a :class:`Check`: how many things it looked at and what it found wrong
(at most :data:`SHOWN` examples are kept, the count is exact).

A deadline judges a participant. The simulated participants all answer except the payment
gateway for ``tok_timeout`` (see the README's deterministic triggers), and the run's approver
answers every approval. So an order cancelled with any step or task timed out is blamed
wrongly unless the step is ``payment`` and its card token (from the payment service's own
``intents``) is ``tok_timeout``; a return cancelled by any deadline is blamed wrongly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from choreo.chaos.snapshot import OrderView, ReturnView, Snapshot

T = TypeVar("T")
TERMINAL = ("completed", "cancelled")
SHOWN = 10
NEVER_ANSWERS = {"payment": "tok_timeout"}
"""Steps whose participant never answers, and the trigger that makes it so."""
BOUNCE_DOMAIN = "@bounce.example"


@dataclass
class Check:
    """One invariant's verdict."""

    name: str
    checked: int = 0
    violations: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.violations == 0

    def fail(self, example: str) -> None:
        self.violations += 1
        if len(self.examples) < SHOWN:
            self.examples.append(example)


def sagas_terminal(snap: Snapshot) -> Check:
    """Every saga of the run (orders and returns) completed or cancelled."""
    check = Check("every saga terminal", len(snap.orders) + len(snap.returns))
    for order in snap.orders:
        if order.status not in TERMINAL:
            check.fail(f"{order.order_id} is {order.status}")
    for ret in snap.returns:
        if ret.status not in TERMINAL:
            check.fail(f"return {ret.return_id} is {ret.status}")
    return check


def charges_and_refunds(snap: Snapshot) -> Check:
    """Per order at most one charge (one payments row, by its key), no refund of a completed
    order, and exactly one refund of a charged order that was cancelled."""
    check = Check("at most one charge; one refund per charged cancelled order", len(snap.orders))
    for order in snap.orders:
        payment = snap.payments.get(order.order_id)
        if payment is None or payment.outcome != "charged":
            continue
        if order.status == "completed" and payment.refund_count != 0:
            check.fail(f"{order.order_id} completed but refunded {payment.refund_count}x")
        if order.status == "cancelled" and payment.refund_count != 1:
            check.fail(f"{order.order_id} cancelled, charged, refunded {payment.refund_count}x")
    return check


def no_reservation_held(snap: Snapshot) -> Check:
    """No reservation of a finished order still holds stock, and no stock is reserved but
    what orders outside the run hold."""
    check = Check("no reservation held", len(snap.reservations))
    ended = {o.order_id for o in snap.orders if o.status in TERMINAL}
    for order_id, status in sorted(snap.reservations.items()):
        if status == "reserved" and order_id in ended:
            check.fail(f"{order_id}: reservation still held")
    for sku, level in sorted(snap.stock.items()):
        elsewhere = snap.held_elsewhere.get(sku, 0)
        if level.reserved != elsewhere:
            check.fail(f"{sku}: {level.reserved} unit(s) reserved, {elsewhere} by other orders")
    return check


def no_live_shipment_on_cancelled(snap: Snapshot) -> Check:
    """A cancelled order's shipment, if one was scheduled, was cancelled."""
    cancelled = [o for o in snap.orders if o.status == "cancelled"]
    check = Check("no live shipment on a cancelled order", len(cancelled))
    for order in cancelled:
        shipment = snap.shipments.get(order.order_id)
        if shipment is not None and shipment.outcome == "scheduled" and not shipment.cancelled:
            check.fail(f"{order.order_id}: shipment scheduled and not cancelled")
    return check


def one_confirmation(snap: Snapshot) -> Check:
    """Exactly one confirmation mail per completed order (none where the address bounces)."""
    completed = [o for o in snap.orders if o.status == "completed"]
    check = Check("one confirmation per completed order", len(completed))
    for order in completed:
        sent = snap.confirmations.get(order.order_id, 0)
        bounces = snap.recipients.get(order.order_id, "").endswith(BOUNCE_DOMAIN)
        if sent != (0 if bounces else 1):
            check.fail(f"{order.order_id}: {sent} confirmation(s)")
    return check


def stock_conserved(snap: Snapshot) -> Check:
    """Per SKU, available + reserved + shipped = taken in."""
    check = Check("stock conserved", len(snap.stock))
    for sku, s in sorted(snap.stock.items()):
        if s.available + s.reserved + s.shipped != s.seeded:
            check.fail(f"{sku}: {s.available}+{s.reserved}+{s.shipped} != {s.seeded}")
    return check


def _kept_only_if_completed(
    snap: Snapshot, name: str, what: str, rows: Mapping[str, T], kept: Callable[[T], bool]
) -> Check:
    """Per ended return: its row in ``rows`` is ``kept`` exactly when the return completed
    (a cancelled return's effect undone or never made)."""
    ended = [r for r in snap.returns if r.status in TERMINAL]
    check = Check(name, len(ended))
    for ret in ended:
        row = rows.get(ret.return_id)
        if (row is not None and kept(row)) != (ret.status == "completed"):
            check.fail(f"return {ret.return_id} {ret.status}, {what} {row}")
    return check


def return_refunds(snap: Snapshot) -> Check:
    """A completed return refunded (its one ``return_refunds`` row), a cancelled one not."""
    return _kept_only_if_completed(
        snap,
        "a completed return refunded, a cancelled one not",
        "refund",
        snap.refunds,
        lambda outcome: outcome == "refunded",
    )


def return_restocks(snap: Snapshot) -> Check:
    """A completed return's units restocked and kept, a cancelled one's not left in stock."""
    return _kept_only_if_completed(
        snap,
        "a completed return restocked, a cancelled one's units taken out",
        "restock",
        snap.restocks,
        lambda restock: restock.outcome == "restocked" and not restock.unstocked,
    )


def return_pickups(snap: Snapshot) -> Check:
    """A completed return's pickup scheduled, a cancelled one's not left scheduled."""
    return _kept_only_if_completed(
        snap,
        "a completed return's pickup kept, a cancelled one's cancelled",
        "pickup",
        snap.pickups,
        lambda pickup: pickup.outcome == "scheduled" and not pickup.cancelled,
    )


def one_return_confirmation(snap: Snapshot) -> Check:
    """Exactly one confirmation mail per completed return."""
    completed = [r for r in snap.returns if r.status == "completed"]
    check = Check("one confirmation per completed return", len(completed))
    for ret in completed:
        sent = snap.return_confirmations.get(ret.return_id, 0)
        if sent != 1:
            check.fail(f"return {ret.return_id}: {sent} confirmation(s)")
    return check


def malformed_dead_lettered(snap: Snapshot) -> Check:
    """Every injected malformed value is in the DLQ, with a reason."""
    check = Check("every malformed value in the DLQ with a reason", len(snap.injected))
    for record in snap.injected:
        reasons = snap.dead_letters.get((record.topic, record.partition, record.offset), [])
        if not any(reason.strip() for reason in reasons):
            check.fail(f"{record.topic}/{record.partition}@{record.offset} not dead-lettered")
    return check


def projections_rebuilt(snap: Snapshot) -> Check:
    """The live read models equal a rebuild from the log (skipped: nothing checked)."""
    differences = snap.rebuild_differences
    check = Check("projections equal a rebuild from the log", 0 if differences is None else 1)
    for difference in differences or []:
        check.fail(difference)
    return check


def blamed_by_deadline(order: OrderView, tokens: dict[str, str]) -> list[str]:
    """The timed-out steps and tasks of a cancelled order whose participant would have
    answered (empty: none, or the order was not cancelled)."""
    if order.status != "cancelled":
        return []
    token = tokens.get(order.order_id)
    return [name for name in order.timed_out if NEVER_ANSWERS.get(name, "") != token]


def no_wrong_deadline(snap: Snapshot) -> Check:
    """No saga cancelled by a deadline whose participant would have answered (every return's
    participant answers)."""
    by_deadline = [o for o in snap.orders if o.status == "cancelled" and o.timed_out]
    returns = [r for r in snap.returns if r.status == "cancelled" and r.timed_out]
    check = Check(
        "no saga cancelled by a deadline whose participant would answer",
        len(by_deadline) + len(returns),
    )
    for order in by_deadline:
        wrong = blamed_by_deadline(order, snap.tokens)
        if wrong:
            token = snap.tokens.get(order.order_id, "?")
            check.fail(
                f"{order.order_id} ({order.scenario}, token {token}): {', '.join(wrong)} timed out"
            )
    for ret in returns:
        check.fail(f"return {ret.return_id} ({ret.scenario}): {', '.join(ret.timed_out)} timed out")
    return check


CHECKS: tuple[Callable[[Snapshot], Check], ...] = (
    sagas_terminal,
    charges_and_refunds,
    no_reservation_held,
    no_live_shipment_on_cancelled,
    one_confirmation,
    stock_conserved,
    return_refunds,
    return_restocks,
    return_pickups,
    one_return_confirmation,
    malformed_dead_lettered,
    projections_rebuilt,
    no_wrong_deadline,
)


def check_all(snap: Snapshot) -> list[Check]:
    """Every invariant over ``snap``, in the report's order."""
    return [check(snap) for check in CHECKS]


def cancelled_by_deadline(snap: Snapshot) -> int:
    """Orders and returns cancelled with a step or task timed out (rightly or not)."""
    sagas: list[OrderView | ReturnView] = [*snap.orders, *snap.returns]
    return sum(1 for saga in sagas if saga.status == "cancelled" and saga.timed_out)
