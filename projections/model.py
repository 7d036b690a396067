"""The order read model as a pure function of an order's events.

:func:`fold_order` turns the events of one order (as logged: type, time, payload) into its
``order_status`` row. It depends only on the *set* of events, never on the order they arrived
in: events of one order come from several topics, whose interleaving differs between live
processing and a rebuild, and both must give the same row. So the status comes from which facts
are present (ranked), each step's start and end from specific events, and ``updated_at`` from
the latest event time, never from a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from sagas.order import V1 as ORDER

STEPS = ("inventory", "approval", "payment", "shipping", "crm", "email")
ACKNOWLEDGED_BY: dict[str, str] = {
    comp.command.event_type: comp.acknowledged_by.event_type
    for step in ORDER.steps
    if (comp := step.compensation) is not None and comp.acknowledged_by is not None
}
"""Compensating command → the event acknowledging it, as the order saga's definition says."""

FAILURES = {
    "inventory.reservation_failed",
    "payment.declined",
    "shipment.failed",
    "order.rejected",
    *ACKNOWLEDGED_BY,
}


class LoggedEvent(NamedTuple):
    """One event as the projector logged it.

    A named tuple: immutable (histories are cached and shared) and built in a third of a
    frozen dataclass's time, once per event logged or replayed.
    """

    event_id: str
    event_type: str
    order_id: str
    occurred_at: datetime
    producer: str
    payload: dict[str, Any]
    traceparent: str | None = None


RANK: Callable[[LoggedEvent], tuple[datetime, str]] = itemgetter(3, 0)
"""An event's place among its saga's: ``(occurred_at, event_id)``, the order every fold reads
them in (read in C: the folds' hottest call)."""


@dataclass
class StepView:
    """One step of an order's path."""

    step: str
    outcome: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "outcome": self.outcome,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "attempts": self.attempts,
        }


@dataclass
class OrderView:
    """A row of ``order_status``."""

    order_id: str
    status: str = "placed"
    cancel_reason: str | None = None
    current_step: str | None = None
    timeline: list[StepView] = field(default_factory=list)
    steps_done: int = 0
    steps_expected: int = 0
    compensations_done: list[str] = field(default_factory=list)
    trace_id: str | None = None
    customer_id: str | None = None
    total_minor: int | None = None
    currency: str | None = None
    placed_at: datetime | None = None
    updated_at: datetime | None = None
    event_count: int = 0

    @property
    def progress(self) -> str:
        return f"{self.steps_done}/{self.steps_expected}"

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "status": self.status,
            "cancel_reason": self.cancel_reason,
            "current_step": self.current_step,
            "timeline": [s.to_json() for s in self.timeline],
            "progress": {"done": self.steps_done, "expected": self.steps_expected},
            "compensations_done": self.compensations_done,
            "trace_id": self.trace_id,
            "customer_id": self.customer_id,
            "total_minor": self.total_minor,
            "currency": self.currency,
            "placed_at": self.placed_at.isoformat() if self.placed_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "event_count": self.event_count,
        }


# Long: the fold step by step in path order; one function keeps the set-based rules together.
def fold_order(order_id: str, events: Iterable[LoggedEvent]) -> OrderView:
    """The ``order_status`` row of ``order_id`` given all of its logged events."""
    evs = sorted(events, key=RANK)
    view = OrderView(order_id, event_count=len(evs))
    if not evs:
        return view
    earliest: dict[str, LoggedEvent] = {}  # of each type: the first in (time, id) order
    for e in evs:
        earliest.setdefault(e.event_type, e)
    present = earliest.keys()
    view.updated_at = max(e.occurred_at for e in evs)

    placed = earliest.get("order.placed")
    if placed is not None:
        view.placed_at = _time(placed.payload.get("placed_at")) or placed.occurred_at
        view.customer_id = placed.payload.get("customer_id")
        view.total_minor = placed.payload.get("total_minor")
        view.currency = placed.payload.get("currency")
        if placed.traceparent:
            view.trace_id = placed.traceparent.split("-")[1]

    approval_requested = earliest.get("order.approval_requested")
    approved = earliest.get("order.approved")
    rejected = earliest.get("order.rejected")
    charged = earliest.get("payment.charged")
    declined = earliest.get("payment.declined")
    scheduled = earliest.get("shipment.scheduled")
    ship_failed = earliest.get("shipment.failed")
    crm = earliest.get("crm.customer_updated")
    confirmation = [
        e
        for e in evs
        if e.event_type in {"email.sent", "email.failed"}
        and e.payload.get("template") == "order_confirmation"
    ]

    def step(name: str, start: LoggedEvent | None, *ends: tuple[LoggedEvent | None, str]) -> None:
        end = min(
            ((e, outcome) for e, outcome in ends if e is not None),
            key=lambda pair: RANK(pair[0]),
            default=None,
        )
        if start is None and end is None:
            return
        s = StepView(name, started_at=start.occurred_at if start else None)
        if end is not None:
            s.outcome, s.finished_at, s.attempts = end[1], end[0].occurred_at, 1
        view.timeline.append(s)

    step(
        "inventory",
        placed,
        (earliest.get("inventory.reserved"), "reserved"),
        (earliest.get("inventory.reservation_failed"), "out_of_stock"),
    )
    if approval_requested is not None:
        step(
            "approval",
            approval_requested,
            (approved, "approved"),
            (rejected, "rejected" if rejected is None else _rejection(rejected)),
        )
    step("payment", approved, (charged, "charged"), (declined, "declined"))
    if charged is not None:
        view.timeline[-1].attempts = int(charged.payload.get("attempt") or 1)
    step("shipping", charged, (scheduled, "scheduled"), (ship_failed, "failed"))
    step("crm", scheduled, (crm, "updated"))
    email_end = min(confirmation, key=RANK, default=None)
    step(
        "email",
        scheduled,
        (email_end, "sent" if email_end and email_end.event_type == "email.sent" else "failed"),
    )

    expected = [s for s in STEPS if s != "approval" or approval_requested is not None]
    view.steps_expected = len(expected)
    view.steps_done = sum(1 for s in view.timeline if s.finished_at is not None)
    view.compensations_done = sorted(
        command for command, ack in ACKNOWLEDGED_BY.items() if command in present and ack in present
    )

    cancelled = earliest.get("order.cancelled")
    if cancelled is not None:
        view.status, view.cancel_reason = "cancelled", cancelled.payload.get("reason")
    elif "order.completed" in present:
        view.status = "completed"
    elif "order.needs_attention" in present:
        view.status = "needs_attention"
    elif present & FAILURES:
        view.status = "compensating"
    elif scheduled is not None:
        view.status = "shipped"
    elif charged is not None:
        view.status = "paid"
    elif approval_requested is not None and approved is None:
        view.status = "awaiting_approval"
    elif "inventory.reserved" in present:
        view.status = "reserved"
    if view.status == "compensating":
        view.current_step = "compensation"
    elif view.status not in {"completed", "cancelled"}:
        view.current_step = next((s.step for s in view.timeline if s.finished_at is None), None)
    return view


def _time(value: Any) -> datetime | None:
    """A payload timestamp: a datetime when decoded from Avro, ISO text when read from jsonb."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return None


def _rejection(event: LoggedEvent) -> str:
    return "timed_out" if event.payload.get("reason") == "approval_timeout" else "rejected"


def summarize(event_type: str, payload: dict[str, Any]) -> str:
    """A one-line, PII-free summary of an event for the audit trail."""
    p = payload
    match event_type:
        case "order.placed":
            items = sum(int(i.get("quantity", 0)) for i in p.get("items", []))
            return (
                f"{items} item(s), total {_money(p.get('total_minor'), p.get('currency'))}, "
                f"ship to {p.get('shipping_address', {}).get('country_code')}"
            )
        case "order.approval_requested":
            return f"total {_money(p.get('total_minor'), p.get('currency'))} needs approval"
        case "order.approved":
            return f"approved by {p.get('approved_by')}"
        case "order.rejected":
            return f"rejected by {p.get('rejected_by')}: {p.get('reason')}"
        case "order.cancelled":
            return f"cancelled: {p.get('reason')}"
        case "order.completed":
            notes = p.get("notes") or []
            return "completed" + (f" ({'; '.join(notes)})" if notes else "")
        case "order.needs_attention":
            return f"needs attention at {p.get('step')}: {p.get('reason')}"
        case "inventory.reserved":
            return f"reserved {sum(int(i.get('quantity', 0)) for i in p.get('items', []))} unit(s)"
        case "inventory.reservation_failed":
            return f"not reserved: {p.get('reason')}"
        case "payment.charged":
            amount = _money(p.get("amount_minor"), p.get("currency"))
            return f"charged {amount} (attempt {p.get('attempt')})"
        case "payment.refunded":
            return f"refunded {_money(p.get('amount_minor'), p.get('currency'))}"
        case "payment.declined" | "shipment.failed" | "email.failed":
            return f"failed: {p.get('reason')}"
        case "shipment.scheduled":
            return f"scheduled with {p.get('carrier')} to {p.get('country_code')}"
        case "crm.customer_updated":
            return f"customer now has {p.get('orders_count')} order(s)"
        case "email.sent":
            return f"sent {p.get('template')}"
        case _:
            reason = p.get("reason")
            return f"{event_type}" + (f": {reason}" if reason else "")


def _money(minor: Any, currency: Any) -> str:
    if not isinstance(minor, int):
        return "?"
    return f"{minor // 100}.{minor % 100:02d} {currency or ''}".rstrip()
