"""The order sagas list: filtered by status, cancel reason and placing time, searched by order
or customer id, newest first, paged on the server by keyset, live.

The filters live in the URL (so a filtered list can be bookmarked, shared and refreshed), as
does the page's cursor: the ``placed_at`` and id of the row the page starts after
(``after``, the older pages) or ends before (``before``, going back to newer ones). A deep
page costs what the first does (no OFFSET). The status chips count the orders the other
filters keep. Times in the form are UTC, as everywhere in the console.
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from contracts.catalog import CancelReason
from contracts.order import STATUSES
from events.model import as_utc
from projections.api_models import STORABLE_TEXT, OrderId
from projections.backend import QueriesDep
from projections.console import paging
from projections.console.pages import SignedIn, page
from projections.key_paths import keyed, saga_page_url
from projections.queries import OrderFilter

PAGE_SIZE = 25
REASONS: tuple[str, ...] = get_args(CancelReason)

router = APIRouter(include_in_schema=False)


def cursor_text(row: dict[str, Any]) -> str:
    """An order row's position as a URL value (:func:`projections.console.paging.cursor_text`)."""
    return paging.cursor_text(row["placed_at"], row["order_id"])


def form_time(text: str | None) -> datetime | None:
    """A time from the form (``2026-11-21T12:00``, taken as UTC); ``None`` if blank or
    not a time."""
    try:
        moment = datetime.fromisoformat(text.strip()) if text and text.strip() else None
    except ValueError:
        return None
    return as_utc(moment) if moment is not None else None


def _filters(
    status: str | None, reason: str | None, since: str, until: str, q: str
) -> dict[str, str]:
    """The filters as given (only known statuses and reasons), for links and the form."""
    return {
        "status": status if status in STATUSES else "",
        "reason": reason if reason in REASONS else "",
        "since": since if form_time(since) else "",
        "until": until if form_time(until) else "",
        "q": q.strip(),
    }


async def _orders(
    queries: QueriesDep,
    status: Annotated[str | None, Query()] = None,
    reason: Annotated[str | None, Query()] = None,
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    q: Annotated[str, Query(max_length=200, pattern=STORABLE_TEXT)] = "",
    after: Annotated[str | None, Query(max_length=300)] = None,
    before: Annotated[str | None, Query(max_length=300)] = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> dict[str, Any]:
    given = _filters(status, reason, since, until, q)
    where = OrderFilter(
        status=given["status"] or None,
        reason=given["reason"] or None,
        since=form_time(given["since"]),
        until=form_time(given["until"]),
        search=given["q"] or None,
    )
    at = paging.Position.of(after, before, page)
    rows = await queries.order_page(
        where, cursor=at.cursor, direction=at.direction, limit=PAGE_SIZE
    )
    by_status = await queries.count_by_status(where)
    everything = sum(by_status.values())
    total = by_status.get(where.status, 0) if where.status else everything
    query = {k: v for k, v in given.items() if v}
    others = {k: v for k, v in query.items() if k != "status"}
    return {
        "orders": rows,
        **at.links(rows, total, query, cursor_text, PAGE_SIZE),
        "status": given["status"],
        "filters": given,
        "statuses": STATUSES,
        "status_links": {s: others | {"status": s} for s in STATUSES},
        "all_statuses": others,
        "reasons": REASONS,
        "by_status": by_status,
        "all_orders": everything,
    }


Orders = Annotated[dict[str, Any], Depends(_orders)]


@router.get("/console/sagas/order")
async def orders_page(request: Request, user: SignedIn, data: Orders) -> HTMLResponse:
    """Order sagas, newest first, filtered and searched, paged on the server, live."""
    return page(request, "orders.html", user, section="orders", **data)


# Where every type's list has its live part (sagas_list.py), not under /console/sagas/order/,
# where it would take an order keyed "live" for itself.
@router.get("/console/live/sagas/order")
async def orders_live(request: Request, user: SignedIn, data: Orders) -> HTMLResponse:
    """The orders list's changing part."""
    return page(request, "_orders.html", user, **data)


@router.get("/console/orders")
async def orders_by_menu_name(request: Request) -> RedirectResponse:
    """The orders list at the name its menu entry has (a typed or remembered address)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/console/sagas/order{query}", HTTPStatus.TEMPORARY_REDIRECT)


@router.get(keyed("/console/orders/{order_id}"))
async def order_by_menu_name(order_id: OrderId) -> RedirectResponse:
    """An order's page at ``/console/orders/{id}``, as the orders API's ``/orders/{id}``."""
    return RedirectResponse(saga_page_url("order", order_id), HTTPStatus.TEMPORARY_REDIRECT)
