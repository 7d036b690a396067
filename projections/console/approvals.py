"""The approvals page: orders waiting for a person's decision, and the operator's answer.

Each row shows the order's amount and customer, how long it has waited and how long is left
before the approval times out (the expiry the coordinator published in
``order.approval_requested``), and what happens then (the order saga definition's timeout
action). Operators approve or reject with a reason through the JSON API (the page's script
sends the session's CSRF value); viewers see the same list without the controls. The list
refreshes every 3 seconds, so a decided order leaves it once the projector has read the
decision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from projections.backend import QueriesDep
from projections.console.pages import SignedIn, page
from sagas.definition import HumanTask
from sagas.registry import SagaRegistry

SHOWN = 200
"""At most this many waiting orders are listed (the soonest to expire first)."""

router = APIRouter(include_in_schema=False)


def timeout_action(sagas: SagaRegistry, saga_type: str = "order") -> str:
    """What the current definition of ``saga_type`` does when an approval times out (as
    the API knows the definitions: the coordinator's ``CHOREO_SAGA_APPROVAL_TIMEOUT_ACTION``
    overrides it in the coordinator's process)."""
    definition = sagas.current(saga_type)
    tasks = [n for n in definition.nodes if isinstance(n, HumanTask)]
    return str(definition.value(tasks[0].on_timeout)) if tasks else "-"


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def waiting(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """An awaiting-approval row with what the page shows: since when it waits, for how long,
    the expiry and the seconds left (negative once overdue)."""
    request = row.get("request") or {}
    approval = next((s for s in row["timeline"] if s["step"] == "approval"), None)
    since = _moment(request.get("requested_at")) or _moment(approval and approval["started_at"])
    expires = _moment(request.get("expires_at"))
    return {
        **row,
        "amount_minor": row["total_minor"]
        if row["total_minor"] is not None
        else request.get("total_minor"),
        "currency": row["currency"] or request.get("currency"),
        "threshold_minor": request.get("threshold_minor"),
        "waiting_since": since.isoformat() if since else None,
        "waited_s": (now - since).total_seconds() if since else None,
        "expires_at": expires.isoformat() if expires else None,
        "left_s": (expires - now).total_seconds() if expires else None,
    }


async def _approvals(request: Request, queries: QueriesDep) -> dict[str, Any]:
    now = datetime.now(UTC)
    rows = [waiting(r, now) for r in await queries.approvals(limit=SHOWN)]
    total = await queries.count_orders(status="awaiting_approval")
    return {
        "approvals": rows,
        "total": total,
        "timeout_action": timeout_action(request.app.state.definitions),
    }


Approvals = Annotated[dict[str, Any], Depends(_approvals)]


@router.get("/console/approvals")
async def approvals_page(request: Request, user: SignedIn, data: Approvals) -> HTMLResponse:
    """Orders waiting for approval, the soonest to expire first, live."""
    return page(request, "approvals.html", user, section="approvals", **data)


@router.get("/console/approvals/live")
async def approvals_live(request: Request, user: SignedIn, data: Approvals) -> HTMLResponse:
    """The approvals list's changing part."""
    return page(request, "_approvals.html", user, **data)
