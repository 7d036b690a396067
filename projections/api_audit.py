"""The API's audit reads: who redrove which dead letters (``GET /dead-letters/redrives``).

The rows are written by ``POST /dead-letters/redrive`` (:mod:`projections.api_actions`)
through :class:`~projections.audit.RedriveAudit`; reading them needs ``viewer``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from projections.access import Viewer
from projections.api_models import ErrorBody, RedriveAuditList, RedriveRecord
from projections.backend import AuditDep

router = APIRouter()


@router.get(
    "/dead-letters/redrives",
    responses={
        401: {"model": ErrorBody, "description": "No valid token or session."},
        503: {"model": ErrorBody, "description": "PostgreSQL unavailable."},
    },
)
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
