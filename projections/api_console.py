"""The API's reads behind the console's work pages: the orders waiting for approval
(``GET /approvals``) and the redrive audit (``GET /dead-letters/redrives``).

Both need ``viewer``. The audit's rows are written by ``POST /dead-letters/redrive``
(:mod:`projections.api_actions`) through :class:`~projections.audit.RedriveAudit`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from projections import waiting
from projections.access import Viewer
from projections.api_models import (
    Approval,
    Approvals,
    ErrorBody,
    OrderStatus,
    RedriveAuditList,
    RedriveRecord,
)
from projections.backend import AuditDep, QueriesDep
from projections.queries import ORDER_TYPE, order_json

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid token or session."},
    422: {"model": ErrorBody, "description": "A parameter is invalid."},
    503: {"model": ErrorBody, "description": "PostgreSQL unavailable."},
}


@router.get("/approvals", responses=_ERRORS)
async def list_approvals(
    _: Viewer,
    request: Request,
    queries: QueriesDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 200,
) -> Approvals:
    """Orders waiting for a person's decision, the soonest to expire first, each with its
    approval request's times and threshold: the order sagas of the inbox of every type's
    (``GET /sagas/waiting?type=order``), an order whose timeout escalated included."""
    entries, total = await waiting.waiting(
        queries, request.app.state.definitions, saga_type=ORDER_TYPE, limit=limit
    )
    approvals = [
        Approval(
            order=OrderStatus.model_validate(order_json(entry["saga"])),
            requested_at=entry["requested_at"],
            expires_at=entry["expires_at"],
            threshold_minor=next(
                (a["minor"] for a in entry["amounts"] if a["name"] == "threshold"), None
            ),
        )
        for entry in entries
    ]
    return Approvals(approvals=approvals, count=len(approvals), total=total)


@router.get("/dead-letters/redrives", responses=_ERRORS)
async def list_redrives(
    _: Viewer,
    audit: AuditDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 50,
) -> RedriveAuditList:
    """The redrive audit, newest first: when, by which token, which dead letters."""
    rows = await audit.recent(limit=limit)
    return RedriveAuditList(
        redrives=[RedriveRecord.model_validate(r) for r in rows], count=len(rows)
    )
