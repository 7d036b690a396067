"""The HTTP API over the generic saga read model: ``/sagas`` (list), ``/sagas/waiting`` (the
sagas a person's answer is awaited by), ``/sagas/{type}/{key}`` (status, steps with their
timeline, compensations, progress) and ``/sagas/{type}/{key}/history`` (its events). Reads,
so the ``viewer`` role; answers are what :mod:`projections.sagas_queries` and
:mod:`projections.waiting` return, as the CLI's `choreo sagas ... --json` prints them."""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from projections import sagas_activity, sagas_queries, waiting
from projections.access import require
from projections.api_models import STORABLE_TEXT, ErrorBody, HistoryEntry, SagaStep
from projections.backend import QueriesDep
from projections.key_paths import KEY_TEXT, keyed

SagaType = Annotated[
    str, Path(min_length=1, max_length=100, pattern=STORABLE_TEXT, description="e.g. `order`")
]
SagaKey = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=STORABLE_TEXT,
        description=f"e.g. `ord-1a2b3c4d`; {KEY_TEXT}",
    ),
]


class Progress(BaseModel):
    """Steps done of the steps expected on this saga's path."""

    done: int
    expected: int


class SagaCompensation(BaseModel):
    """A step's undo: its command, how often it was sent, its acknowledgement."""

    step: str
    command: str
    acknowledged_by: str | None
    sent_at: datetime
    attempts: int
    acknowledged_at: datetime | None
    reason: str | None


class SagaStatus(BaseModel):
    """A row of ``saga_status``."""

    saga_type: str
    saga_key: str
    version: int
    status: str = Field(
        description="running, a human task's waiting status (e.g. awaiting_approval), "
        "compensating, needs_attention, completed, cancelled."
    )
    milestone: str | None = Field(description="The newest milestone reached (e.g. `paid`).")
    reason: str | None = Field(description="The cancel reason.")
    current_steps: list[str]
    progress: Progress
    started_at: datetime | None
    updated_at: datetime | None
    ended_at: datetime | None
    steps: list[SagaStep]
    compensations: list[SagaCompensation]
    event_count: int
    trace_id: str | None = Field(description="The saga's trace (look it up in Jaeger).")
    attributes: dict[str, Any] = Field(
        description="What the saga's start event gave that its definition captures "
        "(an order's `customer_id`, `total_minor`, `currency`)."
    )


class SagaRef(BaseModel):
    """Another saga, by type and key, with its status."""

    saga_type: str
    saga_key: str
    status: str


class SagaDetail(SagaStatus):
    """One saga's row, with the sagas that name it."""

    named_by: list[SagaRef] = Field(
        description="The newest 20 sagas of other types whose start captured this saga's key"
        " under its name (an order's returns, by their `order_id`), newest first."
    )


class SagaList(BaseModel):
    sagas: list[SagaStatus]
    count: int
    next: str | None = Field(
        default=None,
        description="The last saga's key: pass it as `after` for the next page; null on the last.",
    )


class Amount(BaseModel):
    """An amount a human task's request names, in minor units."""

    name: str = Field(description="The request's field without `_minor`: `total`, `threshold`.")
    minor: int
    currency: str | None


class WaitingSaga(BaseModel):
    """A saga waiting for a person's answer to one of its human tasks."""

    saga: SagaStatus
    escalated: bool = Field(
        description="Its request timed out and was escalated: it needs attention, and waits on."
    )
    task: str = Field(description="The human task it waits on (e.g. `approval`).")
    requested_at: datetime | None = Field(description="When the answer was asked for.")
    expires_at: datetime | None = Field(
        description="When the request times out: its `expires_at`, else asked + the timeout."
    )
    on_timeout: str = Field(description="What the definition does then: `reject`, `escalate`.")
    amounts: list[Amount] = Field(description="The amounts the request names.")


class StartedMinute(BaseModel):
    minute: datetime
    started: int = Field(description="Sagas of the type started in this minute.")


class LatencyMinute(BaseModel):
    minute: datetime
    n: int = Field(description="Sagas of the type that ended (completed or cancelled) in it.")
    p50: float | None = Field(description="Their start → end, ms; null when none ended.")
    p95: float | None


class StepLatency(BaseModel):
    """One step's or human task's start → finish (ms)."""

    count: int
    p50: float
    p95: float


class SagaActivity(BaseModel):
    """How one saga type is doing."""

    saga_type: str
    minutes: int = Field(description="The window of `started` and `latency`, oldest first.")
    started: list[StartedMinute]
    latency: list[LatencyMinute]
    steps: dict[str, StepLatency] = Field(
        description="Over the type's latest 2,000 sagas, in the order its definition draws them."
    )
    reasons: dict[str, int] = Field(description="Cancelled sagas per reason.")


class WaitingSagas(BaseModel):
    waiting: list[WaitingSaga]
    count: int
    total: int = Field(description="How many sagas wait in all (beyond `limit` too).")


class SagaHistory(BaseModel):
    saga_type: str
    saga_key: str
    events: list[HistoryEntry]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid token or session."},
    404: {"model": ErrorBody, "description": "No such saga."},
    422: {"model": ErrorBody, "description": "A parameter is invalid."},
    503: {"model": ErrorBody, "description": "PostgreSQL or the read models unavailable."},
}

router = APIRouter(dependencies=[require("viewer")], responses=_ERRORS, tags=["sagas"])


def _not_found(saga_type: str, saga_key: str) -> HTTPException:
    return HTTPException(HTTPStatus.NOT_FOUND, f"no {saga_type} saga {saga_key}")


@router.get("/sagas")
async def list_sagas(
    queries: QueriesDep,
    saga_type: Annotated[
        str | None, Query(alias="type", pattern=STORABLE_TEXT, description="Only this type.")
    ] = None,
    status: Annotated[
        str | None, Query(pattern=STORABLE_TEXT, description="Only sagas in this status.")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200, pattern=STORABLE_TEXT, description="Only sagas whose key contains this."
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=STORABLE_TEXT,
            description="The key the previous page ended with (its `next`).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 50,
) -> SagaList:
    """Sagas of every type, newest first, optionally of one type and status or with a part of
    the key; paged by keyset (`next`, then `after`), so a deep page costs what the first does
    for one type (every type's sorts what the filters keep)."""
    cursor = None
    if after is not None:
        cursor = await sagas_queries.position_of(queries, after, saga_type)
        if cursor is None:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"no saga {after} to list after")
    rows = await sagas_queries.saga_page(
        queries, saga_type, status=status, search=q or None, cursor=cursor, limit=limit + 1
    )
    shown = rows[:limit]
    more = len(rows) > limit
    return SagaList(
        sagas=[SagaStatus.model_validate(r) for r in shown],
        count=len(shown),
        next=shown[-1]["saga_key"] if more else None,
    )


@router.get("/sagas/waiting")
async def list_waiting(
    request: Request,
    queries: QueriesDep,
    saga_type: Annotated[
        str | None, Query(alias="type", pattern=STORABLE_TEXT, description="Only this type.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 200,
) -> WaitingSagas:
    """Sagas of every type waiting for a person's answer, the soonest to expire first: the
    task, when it was asked and expires, what happens then, the amounts asked about. Answer
    one with `POST /sagas/{type}/{key}/approve|reject`."""
    entries, total = await waiting.waiting(
        queries, request.app.state.definitions, saga_type=saga_type, limit=limit
    )
    return WaitingSagas(
        waiting=[WaitingSaga.model_validate(e) for e in entries], count=len(entries), total=total
    )


@router.get("/sagas/activity")
async def get_activity(
    request: Request,
    queries: QueriesDep,
    saga_type: Annotated[
        str, Query(alias="type", pattern=STORABLE_TEXT, description="The saga type.")
    ],
    minutes: Annotated[
        int, Query(ge=1, le=1440, description="Minutes of `started` and `latency`.")
    ] = sagas_activity.MINUTES,
) -> SagaActivity:
    """How one saga type is doing (the console draws it under the type's list): sagas
    started and latency (start → end, p50/p95) per minute, each step's latency over the
    type's latest 2,000 sagas, and the reasons its sagas were cancelled for."""
    definitions = request.app.state.definitions
    if saga_type not in definitions.types:
        raise HTTPException(HTTPStatus.NOT_FOUND, f"no saga type {saga_type}")
    found = await sagas_activity.activity(queries, definitions, saga_type, minutes=minutes)
    return SagaActivity.model_validate({"saga_type": saga_type, "minutes": minutes, **found})


# Before the saga itself: a key may hold "/", so "{key}/history" would be a key.
@router.get(keyed("/sagas/{saga_type}/{saga_key}/history"))
async def get_saga_history(
    queries: QueriesDep, saga_type: SagaType, saga_key: SagaKey
) -> SagaHistory:
    """The saga's events in log order, summarized without PII."""
    events = await sagas_queries.history(queries, saga_type, saga_key)
    if events is None:
        raise _not_found(saga_type, saga_key)
    return SagaHistory(
        saga_type=saga_type,
        saga_key=saga_key,
        events=[HistoryEntry.model_validate(e) for e in events],
    )


@router.get(keyed("/sagas/{saga_type}/{saga_key}"))
async def get_saga(
    request: Request, queries: QueriesDep, saga_type: SagaType, saga_key: SagaKey
) -> SagaDetail:
    """One saga: status, current steps, progress, each step's timeline, compensations, and
    the sagas that name it (an order's returns)."""
    found = await sagas_queries.saga(queries, saga_type, saga_key)
    if found is None:
        raise _not_found(saga_type, saga_key)
    registry = request.app.state.definitions
    named_by = await sagas_queries.named_by(queries, registry, saga_type, saga_key)
    return SagaDetail.model_validate({**found, "named_by": named_by})
