"""The sagas of every type: an index of the types the coordinator runs with their sagas'
counts by status (``/console/sagas``), and one type's list (``/console/sagas/{type}``): its
sagas newest first, filtered by status, searched by a part of the key, paged on the server
by keyset, live, with an operator's answer on the ones waiting for a person, under how the
type is doing (:mod:`projections.sagas_activity`: started and latency per minute, each step's
latency, cancel reasons).

The order saga keeps its own, richer list (``/console/sagas/order``: customers, totals,
cancel reasons, from the order saga's ``saga_status`` rows, :mod:`projections.console.orders`);
every other type, shipped or a team's own, is listed here from the same read model, as the
definitions describe it.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from projections import sagas_activity, sagas_queries
from projections.api_models import STORABLE_TEXT
from projections.backend import QueriesDep
from projections.console import paging
from projections.console.pages import SignedIn, page
from projections.sagas_model import CANCELLED, COMPENSATING, COMPLETED, NEEDS_ATTENTION, RUNNING
from sagas.registry import SagaRegistry

PAGE_SIZE = 25
ORDER_SAGA = "order"
"""The type whose list is the orders page."""

router = APIRouter(include_in_schema=False)


def statuses(definitions: SagaRegistry, saga_type: str, counted: dict[str, int]) -> list[str]:
    """A type's statuses in the order a saga goes through them (its tasks' waiting statuses
    after running), then any other the read model has (a version's since retired)."""
    waiting = [t.waiting_status for d in definitions if d.saga_type == saga_type for t in d.tasks]
    known = [RUNNING, *waiting, COMPENSATING, NEEDS_ATTENTION, COMPLETED, CANCELLED]
    known = list(dict.fromkeys(known))
    return known + sorted(set(counted) - set(known))


def list_path(saga_type: str) -> str:
    """Where a type's sagas are listed."""
    return f"/console/sagas/{saga_type}"


async def _index(request: Request, queries: QueriesDep) -> dict[str, Any]:
    definitions: SagaRegistry = request.app.state.definitions
    counts = await sagas_queries.count_by_type(queries)
    types = []
    for saga_type in definitions.types:
        counted = counts.get(saga_type, {})
        types.append(
            {
                "saga_type": saga_type,
                "versions": definitions.versions(saga_type),
                "total": sum(counted.values()),
                "by_status": [
                    (s, counted.get(s, 0)) for s in statuses(definitions, saga_type, counted)
                ],
                "path": list_path(saga_type),
            }
        )
    return {"types": types}


@router.get("/console/sagas")
async def sagas_index(
    request: Request, user: SignedIn, data: Annotated[dict[str, Any], Depends(_index)]
) -> HTMLResponse:
    """Every saga type the coordinator runs, with its sagas' counts by status."""
    return page(request, "sagas.html", user, section="sagas", **data)


SagaType = Annotated[str, Path(min_length=1, max_length=100)]


def _cursor_text(row: dict[str, Any]) -> str:
    """A saga row's position as a URL value (:func:`projections.console.paging.cursor_text`)."""
    return paging.cursor_text(row["started_at"], row["saga_key"])


async def _list(
    request: Request,
    queries: QueriesDep,
    saga_type: SagaType,
    status: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str, Query(max_length=200, pattern=STORABLE_TEXT)] = "",
    after: Annotated[str | None, Query(max_length=300)] = None,
    before: Annotated[str | None, Query(max_length=300)] = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> dict[str, Any]:
    definitions: SagaRegistry = request.app.state.definitions
    if saga_type not in definitions.types:
        raise HTTPException(HTTPStatus.NOT_FOUND, f"no saga type {saga_type}")
    search = q.strip()
    by_status, activity = await asyncio.gather(
        sagas_queries.count_by_status(queries, saga_type, search=search or None),
        sagas_activity.activity(queries, definitions, saga_type),
    )
    known = statuses(definitions, saga_type, by_status)
    status = status if status in known else None
    at = paging.Position.of(after, before, page)
    rows = await sagas_queries.saga_page(
        queries, saga_type, status=status, search=search or None, cursor=at.cursor,
        direction=at.direction, limit=PAGE_SIZE,
    )  # fmt: skip
    for row in rows:
        row["waiting_on"] = sagas_queries.waiting_on(row)
    everything = sum(by_status.values())
    total = by_status.get(status, 0) if status else everything
    query = {k: v for k, v in (("status", status), ("q", search)) if v}
    others = {k: v for k, v in query.items() if k != "status"}
    return {
        "saga_type": saga_type,
        "sagas": rows,
        **at.links(rows, total, query, _cursor_text, PAGE_SIZE),
        "status": status or "",
        "q": search,
        "statuses": known,
        "status_links": {s: others | {"status": s} for s in known},
        "all_statuses": others,
        "by_status": by_status,
        "all_sagas": everything,
        "path": list_path(saga_type),
        "activity": activity,
    }


SagaList = Annotated[dict[str, Any], Depends(_list)]


@router.get("/console/sagas/{saga_type}")
async def sagas_list(request: Request, user: SignedIn, data: SagaList) -> HTMLResponse:
    """One type's sagas, newest first, filtered and searched, paged on the server, live."""
    return page(request, "sagas_list.html", user, section="sagas", **data)


@router.get("/console/live/sagas/{saga_type}")
async def sagas_list_live(request: Request, user: SignedIn, data: SagaList) -> HTMLResponse:
    """The list's changing part."""
    return page(request, "_sagas_list.html", user, **data)
