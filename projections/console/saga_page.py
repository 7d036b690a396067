"""One saga's page (``/console/sagas/{type}/{key}``), for a saga of any type.

Everything on it comes from the saga's logged events (``event_log``) folded through its
definition by :func:`projections.sagas_model.fold_saga`, the function that writes
``saga_status``: its definition drawn (:mod:`projections.console.flow`) with the path it took
highlighted and the step it waits on marked; its timeline (:mod:`projections.console.timeline`);
the audit trail (every event with its envelope and its payload, personal data masked as in the
logs, a forgotten customer's sealed values read as erased); the trace waterfall from Jaeger
(:mod:`projections.console.waterfall`). With ``as_of`` the same fold takes only the events up
to that instant: the saga as it was then (time travel). The live part is fetched again every
2 s while the saga runs, the waterfall every 5 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from events.personal_data import forgotten_customers, keys_schema
from projections import sagas_queries
from projections.backend import QueriesDep
from projections.console import timeline, waterfall
from projections.console.flow import DETAIL_CHAR, PAD, Flow
from projections.console.flow import layout as flow_layout
from projections.console.orders import form_time
from projections.console.pages import SignedIn, page
from projections.key_paths import keyed, saga_page_url
from projections.masking import mask
from projections.model import LoggedEvent
from projections.queries import Queries
from projections.sagas_model import ENDED, SagaView, fold_saga
from sagas.definition import SagaDefinition
from sagas.registry import SagaRegistry

router = APIRouter(include_in_schema=False)

SagaType = Annotated[str, Path(min_length=1, max_length=100)]
SagaKey = Annotated[str, Path(min_length=1, max_length=200)]
AsOf = Annotated[str, Query(max_length=40)]

# A node's state in the drawing, from its step's state in the fold.
_NODE_STATE = {
    "succeeded": "done",
    "skipped": "skipped",
    "failed": "failed",
    "timed_out": "failed",
    "running": "current",
    "awaiting": "current",
    "abandoned": "abandoned",
}
INDENT = orjson.OPT_INDENT_2
PASSED = frozenset({"done", "skipped"})


@dataclass(frozen=True)
class LogEntry:
    """One row of ``event_log``: the event as the fold takes it and its envelope."""

    event: LoggedEvent
    envelope: dict[str, Any]


async def saga_events(queries: Queries, saga_key: str) -> list[LogEntry]:
    """Every logged event of the key ``saga_key``, in log order."""
    rows = await queries.db.pool.fetch(
        f"SELECT event_id::text, event_type, order_id, occurred_at, producer, schema_version,"
        f' correlation_id, causation_id, traceparent, topic, partition, "offset",'
        f" payload::text FROM {queries.schema}.event_log WHERE order_id = $1"
        ' ORDER BY occurred_at, topic, partition, "offset"',
        saga_key,
    )
    entries = []
    for r in rows:
        payload = orjson.loads(r["payload"])
        event = LoggedEvent(
            r["event_id"],
            r["event_type"],
            r["order_id"],
            r["occurred_at"],
            r["producer"],
            payload,
            r["traceparent"],
        )
        envelope = {
            k: r[k]
            for k in ("event_id", "event_type", "producer", "schema_version", "correlation_id")
        }
        envelope |= {
            "occurred_at": r["occurred_at"].isoformat(),
            "causation_id": r["causation_id"],
            "traceparent": r["traceparent"],
            "position": f"{r['topic']}/{r['partition']}@{r['offset']}",
        }
        entries.append(LogEntry(event, envelope))
    return entries


def path_states(view: SagaView) -> dict[str, str]:
    """Each box of the saga's drawing → how this saga went there: done, current (the step it
    waits on), failed, skipped, abandoned, or absent (not reached)."""
    states = {"start": "done"} if view.started_at else {}
    for step in view.steps:
        if step.state in _NODE_STATE:
            states[step.step] = _NODE_STATE[step.state]
    if view.status == "completed":
        states["done"] = "done"
    for undo in view.compensations:
        states[f"undo_{undo.step}"] = "done" if undo.acknowledged_at else "current"
    return states


def path_details(view: SagaView, flow: Flow) -> dict[str, str]:
    """The second line of a failed or timed-out step's box: how it failed (``✗ no_charge``)
    instead of the event that would have ended it well, cut to the box's width."""
    widths = {n.id: n.w for n in flow.nodes}
    details = {}
    for step in view.steps:
        if _NODE_STATE.get(step.state) == "failed" and step.step in widths:
            text = f"✗ {step.detail or step.reason or step.state}"
            fits = int((widths[step.step] - 2 * PAD) / DETAIL_CHAR)
            details[step.step] = text if len(text) <= fits else text[: fits - 1] + "…"
    return details


def taken_edges(flow: Flow, states: dict[str, str]) -> set[tuple[str, str]]:
    """The curves this saga travelled: from a box it passed to one it reached, and from a
    step to its compensation once sent."""
    return {
        (e.source, e.target)
        for e in flow.edges
        if e.target in states and (e.kind == "undo" or states.get(e.source) in PASSED)
    }


def _definition(registry: SagaRegistry, saga_type: str, version: int) -> SagaDefinition:
    try:
        return registry.get(saga_type, version)
    except KeyError:
        raise HTTPException(
            HTTPStatus.NOT_FOUND, f"this API does not know {saga_type} v{version}"
        ) from None


# Long: gathers every part of the page from one read of the saga's events.
async def _saga(
    request: Request, queries: QueriesDep, saga_type: SagaType, saga_key: SagaKey, as_of: AsOf = ""
) -> dict[str, Any]:
    row = await sagas_queries.saga(queries, saga_type, saga_key)
    if row is None:
        raise HTTPException(HTTPStatus.NOT_FOUND, f"no {saga_type} saga {saga_key}")
    registry: SagaRegistry = request.app.state.definitions
    d = _definition(registry, saga_type, row["version"])
    named_by = await sagas_queries.named_by(queries, registry, saga_type, saga_key)
    entries = await saga_events(queries, saga_key)
    instant = form_time(as_of)
    shown = [e for e in entries if instant is None or e.event.occurred_at <= instant]
    events = [e.event for e in shown]
    view = fold_saga(d, saga_key, events)
    payloads = [e.payload for e in events]
    forgotten = await forgotten_customers(queries.db.pool, keys_schema(queries.settings), payloads)
    now = datetime.now(UTC)
    end = instant or view.ended_at or (now if view.status not in ENDED else view.updated_at)
    states = path_states(view)
    drawing = flow_layout(d)
    first = entries[0].event.occurred_at if entries else now
    last = entries[-1].event.occurred_at if entries else now
    return {
        "d": d,
        "settings": queries.settings,
        "saga": view,
        "flow": drawing,
        "states": states,
        "details": path_details(view, drawing),
        "taken": taken_edges(drawing, states),
        "timeline": timeline.layout(view, events, end or now),
        "audit": [
            {
                **e.envelope,
                "payload": orjson.dumps(mask(e.event.payload, forgotten), option=INDENT).decode(),
            }
            for e in shown
        ],
        "as_of": instant,
        "ended": view.status in ENDED,
        "live": instant is None and view.status not in ENDED,
        "slider": {
            "min": int(first.timestamp() * 1000),
            "max": int(last.timestamp() * 1000),
            "value": int((instant or last).timestamp() * 1000),
            "marks": [int(e.event.occurred_at.timestamp() * 1000) for e in entries],
        },
        "events_total": len(entries),
        "named_by": named_by,
        "traceparent": next((e.event.traceparent for e in entries if e.event.traceparent), None),
        "undo_commands": sorted(
            s.compensation.command.event_type for s in d.steps if s.compensation is not None
        ),
    }


SagaData = Annotated[dict[str, Any], Depends(_saga)]


@router.get(keyed("/console/saga/{saga_key}"))
async def saga_by_key(user: SignedIn, queries: QueriesDep, saga_key: SagaKey) -> RedirectResponse:
    """The page of the saga keyed ``saga_key``, whatever its type (for links that know only
    the key, such as a dead letter's)."""
    found = await queries.db.pool.fetchval(
        f"SELECT saga_type FROM {queries.schema}.saga_status WHERE saga_key = $1 LIMIT 1",
        saga_key,
    )
    if found is None:
        raise HTTPException(HTTPStatus.NOT_FOUND, f"no saga {saga_key}")
    return RedirectResponse(saga_page_url(found, saga_key), HTTPStatus.SEE_OTHER)


# The page's parts before the page: a key may hold "/", so "{key}/live" would be a key.
@router.get(keyed("/console/sagas/{saga_type}/{saga_key}/live"))
async def saga_live(request: Request, user: SignedIn, data: SagaData) -> HTMLResponse:
    """The saga page's changing part: status, path, timeline, audit trail."""
    return page(request, "_saga.html", user, **data)


@router.get(keyed("/console/sagas/{saga_type}/{saga_key}/trace"))
async def saga_trace(request: Request, user: SignedIn, data: SagaData) -> HTMLResponse:
    """The saga page's trace waterfall, from Jaeger."""
    trace = await waterfall.load(data["settings"], data["traceparent"], data["undo_commands"])
    return page(request, "_waterfall.html", user, trace=trace, **data)


@router.get(keyed("/console/sagas/{saga_type}/{saga_key}"))
async def saga_page(request: Request, user: SignedIn, data: SagaData) -> HTMLResponse:
    """One saga: its path through its definition, timeline, audit trail and trace, live;
    as it was at ``as_of`` when given."""
    d: SagaDefinition = data["d"]
    trace = await waterfall.load(data["settings"], data["traceparent"], data["undo_commands"])
    section = "orders" if d.saga_type == "order" else "sagas"
    return page(request, "saga.html", user, section=section, trace=trace, **data)
