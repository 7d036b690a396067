"""What the read models read of a logged event, and its one-line audit summary.

:class:`LoggedEvent` is an event as the projector logged it (type, time, producer, payload),
what the saga fold (:mod:`projections.sagas_model`) and the audit trail read;
:func:`summarize` is the PII-free line the audit trail shows for it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple


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
