"""The console's routes: sign-in and sign-out and the overview, and what every page uses.

Each page has a ``/live`` twin that renders only its changing part; the page's script fetches
it again every few seconds (polling: one short request, through any proxy, no connection held
per open tab) and swaps it in. Pages need a signed-in session (else they redirect to the
sign-in page); the operator's buttons are rendered for operators only, and the API checks the
role again when they are used.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from contracts.order import STATUSES
from events.errors import StackError
from projections import sagas_activity
from projections import waiting as inbox
from projections.access import (
    authenticate,
    csrf_value,
    session_principal,
    sign_in,
    sign_out,
    token_store,
)
from projections.backend import LagDep, OperationsDep, QueriesDep
from projections.console import charts
from projections.key_paths import key_segment
from projections.queries import ORDER_TYPE
from projections.tokens import Principal

HERE = Path(__file__).parent
SIGN_IN = "/console/sign-in"
log = logging.getLogger("choreo.api")

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(charts.FILTERS)
templates.env.filters["key_segment"] = key_segment  # a key whole in a link, its "/" too
templates.env.globals.update(charts.GLOBALS)

router = APIRouter(include_in_schema=False)


def mount_assets(app: FastAPI) -> None:
    """Serve the console's stylesheet and script at ``/console/assets``."""
    app.mount("/console/assets", StaticFiles(directory=HERE / "assets"), name="console-assets")


async def _signed_in(request: Request) -> Principal:
    """The session's principal; a page without one redirects to the sign-in page."""
    found = session_principal(request)
    if found is None:
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            HTTPStatus.SEE_OTHER,
            "sign in",
            {"Location": f"{SIGN_IN}?{urlencode({'next': wanted})}"},
        )
    return found


SignedIn = Annotated[Principal, Depends(_signed_in)]


def page(request: Request, name: str, user: Principal | None, **context: Any) -> HTMLResponse:
    """The template ``name`` rendered for ``user``, with the session's CSRF value and the
    saga types by their key's name (``keyed_by``: a saga's data that is another's key links)."""
    registry = getattr(request.app.state, "definitions", None)
    context |= {
        "user": user,
        "csrf": csrf_value(request) if user else "",
        "keyed_by": registry.keyed_by if registry is not None else {},
    }
    return templates.TemplateResponse(request, name, context)


def wants_page(request: Request) -> bool:
    """A console page a browser navigated to: its errors are pages too. The fragments a page
    fetches (which keep their last content and mark it stale) and the API get JSON."""
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/console") and "text/html" in accept


def error_page(
    request: Request, status: int, error: str, title: str, detail: str, retry_s: int | None
) -> HTMLResponse:
    """An error as a console page (in the console's frame when signed in); with ``retry_s``
    the browser loads the page again that often (an outage ends without a click)."""
    response = page(
        request,
        "error.html",
        session_principal(request),
        status=status,
        error=error,
        title=title,
        detail=detail,
        retry_s=retry_s,
    )
    response.status_code = status
    return response


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (no open redirect)."""
    return target if target and target.startswith("/console") else "/console"


@router.get("/")
async def root() -> RedirectResponse:
    """The API's root opens the console."""
    return RedirectResponse("/console", HTTPStatus.SEE_OTHER)


@router.get(SIGN_IN)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form (a signed-in user goes straight on)."""
    if session_principal(request) is not None:
        return RedirectResponse(_safe_next(next), HTTPStatus.SEE_OTHER)
    return page(request, "sign_in.html", None, next=_safe_next(next), error=None)


@router.post(SIGN_IN)
async def sign_in_form(
    request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/console"
) -> Response:
    """Check the token; on success start a session and go on, else show the form again."""
    found = await authenticate(token_store(request), token)
    if found is None:
        response = page(
            request, "sign_in.html", None, next=_safe_next(next), error="That token is not valid."
        )
        response.status_code = HTTPStatus.UNAUTHORIZED
        return response
    sign_in(request, found)
    return RedirectResponse(_safe_next(next), HTTPStatus.SEE_OTHER)


@router.post("/console/sign-out")
async def sign_out_form(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session (the form carries the session's CSRF value)."""
    if secrets.compare_digest(csrf, csrf_value(request)):
        sign_out(request)
    return RedirectResponse(SIGN_IN, HTTPStatus.SEE_OTHER)


async def _dead_letters(operations: OperationsDep) -> int | None:
    try:
        return len(await operations.dead_letters())
    except (KafkaError, OSError, StackError, TimeoutError) as exc:
        log.warning("console: dead letters unavailable: %s", exc)
        return None


async def _lag(lag: LagDep) -> list[dict[str, Any]] | None:
    try:
        return await lag.groups()
    except (KafkaError, OSError, StackError, TimeoutError) as exc:
        log.warning("console: consumer lag unavailable: %s", exc)
        return None


async def _overview(
    request: Request, queries: QueriesDep, operations: OperationsDep, lag: LagDep
) -> dict[str, Any]:
    # At once: the page takes as long as its slowest part, not as all of them.
    summary, series, latency, dead, groups, waiting = await asyncio.gather(
        queries.summary(),
        sagas_activity.started_per_minute(queries, ORDER_TYPE),
        sagas_activity.latency_per_minute(queries, ORDER_TYPE),
        _dead_letters(operations),
        _lag(lag),
        inbox.count(queries, request.app.state.definitions),
    )
    return {
        "waiting": waiting,
        "summary": summary,
        "series": series,
        "latency": latency,
        "dead_letters": dead,
        "groups": groups,
        "statuses": STATUSES,
    }


Overview = Annotated[dict[str, Any], Depends(_overview)]


@router.get("/console")
async def overview_page(request: Request, user: SignedIn, data: Overview) -> HTMLResponse:
    """The overview: counts, rates, latencies, dead letters and consumer lag, live."""
    return page(request, "overview.html", user, section="overview", **data)


@router.get("/console/live/overview")
async def overview_live(request: Request, user: SignedIn, data: Overview) -> HTMLResponse:
    """The overview's changing part."""
    return page(request, "_overview.html", user, **data)
