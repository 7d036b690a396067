"""The approvals page: the inbox of sagas of every type waiting for a person's answer.

Each row is one saga (:mod:`projections.waiting`): its key and type, the task it waits on,
the amounts its request names, how long it has waited and how long is left before the
request times out, and what its definition does then. Operators approve or reject with a
reason through the JSON API (``POST /sagas/{type}/{key}/approve|reject``, with the session's
CSRF value); viewers see the same list without the controls. The list refreshes every 3
seconds, so an answered saga leaves it once the projector has read the answer.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from projections import waiting as inbox
from projections.backend import QueriesDep
from projections.console.pages import SignedIn, page

SHOWN = 200
"""At most this many waiting sagas are listed (the soonest to expire first)."""

router = APIRouter(include_in_schema=False)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def waiting(entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A waiting saga (as :func:`projections.waiting.waiting` lists it) with what the page
    shows: its amount and the others (a threshold, say), for how long it has waited and the
    seconds left (negative once overdue)."""
    since, expires = _moment(entry["requested_at"]), _moment(entry["expires_at"])
    amounts = entry["amounts"]
    return {
        **entry,
        "key": entry["saga"]["saga_key"],
        "saga_type": entry["saga"]["saga_type"],
        "amount": amounts[0] if amounts else None,
        "other_amounts": amounts[1:],
        "waited_s": (now - since).total_seconds() if since else None,
        "left_s": (expires - now).total_seconds() if expires else None,
    }


async def _approvals(request: Request, queries: QueriesDep) -> dict[str, Any]:
    now = datetime.now(UTC)
    entries, total = await inbox.waiting(queries, request.app.state.definitions, limit=SHOWN)
    rows = [waiting(e, now) for e in entries]
    return {
        "approvals": rows,
        "total": total,
        "by_type": sorted(Counter(r["saga_type"] for r in rows).items()),
    }


Approvals = Annotated[dict[str, Any], Depends(_approvals)]


@router.get("/console/approvals")
async def approvals_page(request: Request, user: SignedIn, data: Approvals) -> HTMLResponse:
    """Sagas waiting for a person's answer, the soonest to expire first, live."""
    return page(request, "approvals.html", user, section="approvals", **data)


@router.get("/console/approvals/live")
async def approvals_live(request: Request, user: SignedIn, data: Approvals) -> HTMLResponse:
    """The approvals list's changing part."""
    return page(request, "_approvals.html", user, **data)
