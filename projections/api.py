"""The HTTP JSON API over the read models (order status with time travel, lists, history),
the operator's actions, and the console.

:func:`create_app` builds the FastAPI application; every read endpoint is a thin adapter over
:class:`~projections.queries.Queries`, so the API shows exactly what the CLI shows; the actions
(approve, reject, redrive) are in :mod:`projections.api_actions`, sign-in and roles in
:mod:`projections.access`, the console's pages in :mod:`projections.console`. Responses are
typed pydantic models (described at ``/openapi.json`` and ``/docs``), and every error has one
shape: ``{"error": "<code>", "detail": "<text>"}`` (plus ``fields`` on a 422). The API never
writes the projector's tables; its actions publish events.

:func:`run` is the ``api`` process of `choreo run`: uvicorn on ``CHOREO_API_HOST`` /
``CHOREO_API_PORT``, traced (``service.name=api``), stopped gracefully by SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import Annotated, Any

import asyncpg
import uvicorn
from aiokafka.errors import KafkaConnectionError, KafkaError
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import Span
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from events import tracing
from events.breaker_board import read_breakers
from events.database import connection_lost
from events.errors import StackError
from events.logs import configure_logging
from events.settings import Settings, get_settings
from events.stopping import STOP
from projections import API, api_actions, api_console, api_docs, api_sagas
from projections.access import require
from projections.api_models import (
    PG_BIGINT_MAX,
    Breaker,
    ErrorBody,
    ErrorField,
    Health,
    HistoryEntry,
    IsoTime,
    OrderHistory,
    OrderId,
    OrderList,
    OrderStatus,
    Projections,
    ProjectionStatus,
    StatusName,
    Summary,
)
from projections.audit import RedriveAudit
from projections.backend import Backend, BackendDep, QueriesDep
from projections.console import (
    approvals,
    dead_letters,
    definitions,
    orders,
    saga_page,
    sagas_list,
)
from projections.console import pages as console
from projections.key_paths import EscapedSlashes, documented, keyed
from projections.lag import ConsumerLag
from projections.operations import Operations
from projections.tokens import ApiSettings, TokenFile, TokenStore
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

NAME = API.name
SESSION_COOKIE = "choreo_session"
log = logging.getLogger("choreo.api")

HEALTH_TIMEOUT_S = 5.0
"""How long ``/health`` waits for PostgreSQL before it reports the database down."""


def _package_version() -> str:
    try:
        return version("choreo")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


def _not_found(order_id: str, as_of: datetime | None = None) -> HTTPException:
    when = f" as of {as_of.isoformat()}" if as_of is not None else ""
    return HTTPException(HTTPStatus.NOT_FOUND, f"no order {order_id}{when}")


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid token or session."},
    404: {"model": ErrorBody, "description": "No such order."},
    422: {"model": ErrorBody, "description": "A parameter is invalid."},
    503: {"model": ErrorBody, "description": "PostgreSQL, Kafka or the read models unavailable."},
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _ERRORS[code] for code in codes}


# --- endpoints ---------------------------------------------------------------------------------


async def get_order(
    queries: QueriesDep,
    order_id: OrderId,
    as_of: Annotated[
        IsoTime | None,
        Query(
            description="ISO 8601 time (UTC if it has no zone): the order's state as of then, "
            "folded from the event log."
        ),
    ] = None,
) -> OrderStatus:
    """The status of one order, now or as of a past time (time travel)."""
    found = await queries.status(order_id, as_of=as_of)
    if found is None:
        raise _not_found(order_id, as_of)
    return OrderStatus.model_validate(found)


async def list_orders(
    queries: QueriesDep,
    status: Annotated[
        StatusName | None,
        Query(description="Only orders in this status."),
    ] = None,
    since: Annotated[
        IsoTime | None, Query(description="Only orders placed at or after this ISO 8601 time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many orders.")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=PG_BIGINT_MAX, description="Skip this many matching orders (paging).")
    ] = 0,
) -> OrderList:
    """Orders, newest first, optionally of one status and placed since a time; a page of
    ``limit`` after ``offset``, with the total that match."""
    rows = await queries.orders(status=status, since=since, limit=limit, offset=offset)
    total = await queries.count_orders(status=status, since=since)
    return OrderList(
        orders=[OrderStatus.model_validate(r) for r in rows],
        count=len(rows),
        total=total,
        offset=offset,
    )


async def get_history(queries: QueriesDep, order_id: OrderId) -> OrderHistory:
    """The audit trail of one order: every event in log order, summarized without PII."""
    events = await queries.history(order_id)
    if not events:
        raise _not_found(order_id)
    return OrderHistory(order_id=order_id, events=[HistoryEntry.model_validate(e) for e in events])


async def get_summary(
    queries: QueriesDep,
    window_minutes: Annotated[
        int, Query(ge=1, le=1440, description="Window of `orders_per_minute`.")
    ] = 10,
) -> Summary:
    """Counts per status and cancel reason, step durations (p50/p95), orders per minute."""
    return Summary.model_validate(await queries.summary(window_minutes=window_minutes))


async def get_projections(queries: QueriesDep) -> Projections:
    """The projector's lag per partition, last event time and rate, with the summary."""
    status = await queries.projection_status()
    summary = await queries.summary()
    return Projections(
        status=ProjectionStatus.model_validate(status), summary=Summary.model_validate(summary)
    )


async def get_breakers(queries: QueriesDep) -> list[Breaker]:
    """The circuit breaker of every provider in every running process (state, failures,
    deferred messages, bulkhead use, injected faults), as each process publishes it."""
    rows = await read_breakers(queries.db, queries.settings)
    return [Breaker.model_validate(row.to_json()) for row in rows]


async def get_health(backend: BackendDep, response: Response) -> Health:
    """200 when PostgreSQL answers and the projector's tables exist, 503 otherwise."""
    database = projections = False
    detail: str | None = None
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            queries = await backend.connect()
            await queries.db.pool.fetchval("SELECT 1")
            database = True
            projections = await queries.ready()
    except (StackError, OSError, asyncpg.PostgresError) as exc:  # TimeoutError is an OSError
        detail = f"database: {exc or type(exc).__name__}"
    if database and not projections:
        detail = "no read models yet: is the projector running?"
    ok = database and projections
    if not ok:
        response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
    return Health(
        status="ok" if ok else "unavailable",
        database=database,
        projections=projections,
        version=_package_version(),
        detail=detail,
    )


# --- errors ------------------------------------------------------------------------------------


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    body = ErrorBody(error=error, detail=detail, **extra)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    detail = str(exc.detail)
    response: Response
    if exc.status_code >= 400 and console.wants_page(request):
        if detail == phrase:  # Starlette's own (no such route): say what was not found
            detail = f"There is no page at {request.url.path}."
        title = phrase.capitalize()
        response = console.error_page(request, exc.status_code, code, title, detail, None)
    else:
        response = _error(exc.status_code, code, detail)
    response.headers.update(exc.headers or {})
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = [_field(e) for e in exc.errors()]
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields)
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", detail, fields=fields)


def _field(error: dict[str, Any]) -> ErrorField:
    loc: Sequence[str | int] = error.get("loc", ())
    location = str(loc[0]) if loc else "request"
    name = ".".join(str(part) for part in loc[1:]) or location
    return ErrorField(field=name, location=location, message=str(error.get("msg", "invalid")))


async def _unstorable_text(request: Request, exc: Exception) -> Response:
    """A text parameter PostgreSQL cannot take (a NUL, U+0000): the client's input, not an
    outage, whichever parameter and endpoint carried it."""
    return _error(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "invalid_request",
        "a parameter holds a character PostgreSQL cannot store (NUL, U+0000)",
    )


RETRY_AFTER_S = 5
"""What a 503 asks a client to wait before trying again (``Retry-After``; a console page
loads itself again after it)."""


async def _unavailable(request: Request, exc: Exception) -> Response:
    if isinstance(exc, asyncpg.UndefinedTableError):
        error, title = "not_ready", "No read models yet"
        detail = "no read models yet: is the projector running?"
    else:
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        kafka = request.app.state.operations.settings.kafka_bootstrap_servers
        error, title, detail = "unavailable", "Not available right now", _outage(exc, kafka)
    response: Response
    if console.wants_page(request):
        response = console.error_page(request, 503, error, title, detail, RETRY_AFTER_S)
    else:
        response = _error(503, error, detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _outage(exc: Exception, kafka: str) -> str:
    """What is down, in words ("FileNotFoundError: [Errno 2] ..." alone named no server);
    ``kafka``: the bootstrap servers."""
    if isinstance(exc, StackError):
        return str(exc)
    if isinstance(exc, KafkaError):
        # aiokafka's words start with the error's name already; a failed bootstrap's list of
        # (host, port, family) tuples says less than the servers.
        why = type(exc).__name__ if isinstance(exc, KafkaConnectionError) else str(exc)
        return f"Kafka at {kafka} is not answering ({why})"
    what = f"{type(exc).__name__}: {exc}"
    if connection_lost(exc):
        return f"PostgreSQL, which holds the read models, is not answering ({what})"
    return what


# --- the application ---------------------------------------------------------------------------


# Long: the application's whole wiring in one place: lifespan, middleware, every route, errors.
def create_app(
    settings: Settings, api: ApiSettings | None = None, sagas: SagaRegistry = SAGAS
) -> FastAPI:
    """The API and console over the read models of the deployment ``settings`` names (its
    topic prefix), letting in the tokens ``api`` configures (default: from the environment);
    the console shows ``sagas`` as the saga definitions the coordinator runs."""
    api = api or ApiSettings()
    backend = Backend(settings)
    operations = Operations(settings)
    lag = ConsumerLag(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await backend.connect()
        except StackError as exc:  # serve anyway: /health says 503, requests retry connecting
            log.warning("PostgreSQL unavailable at start, retrying per request: %s", exc)
        try:
            yield
        finally:
            await operations.close()
            await lag.close()
            await backend.close()

    app = FastAPI(
        title="Choreo API",
        version=_package_version(),
        description="JSON API over Choreo's read models (order status, also as of a past time; "
        "order lists; audit trails; the projector's progress; a summary; dead letters; the "
        "providers' circuit breakers) and the "
        "operator's actions (approve, reject, redrive). Every endpoint but `/health` needs a "
        "bearer token (`choreo tokens create`) or a console session; acting needs `operator`.",
        lifespan=lifespan,
        docs_url=None,  # served by mount_docs, without a CDN
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.operations = operations
    app.state.audit = RedriveAudit(backend.db, API.schema(settings))
    app.state.lag = lag
    app.state.definitions = sagas
    app.state.tokens = TokenStore(api.tokens, TokenFile(api.token_file(settings)))
    app.add_middleware(
        SessionMiddleware,
        secret_key=api.session_key(settings),
        session_cookie=SESSION_COOKIE,
        max_age=api.session_max_age_s,
        same_site="lax",
        https_only=api.secure_cookies,
    )
    reads = APIRouter(dependencies=[require("viewer")])
    reads.add_api_route(
        "/orders", list_orders, methods=["GET"], responses=_responses(401, 422, 503)
    )
    # The history before the order: an id may hold "/" (as every saga key: key_paths.py).
    reads.add_api_route(
        keyed("/orders/{order_id}/history"),
        get_history,
        methods=["GET"],
        responses=_responses(401, 404, 422, 503),
    )
    reads.add_api_route(
        keyed("/orders/{order_id}"),
        get_order,
        methods=["GET"],
        responses=_responses(401, 404, 422, 503),
    )
    reads.add_api_route(
        "/projections", get_projections, methods=["GET"], responses=_responses(401, 503)
    )
    reads.add_api_route(
        "/summary", get_summary, methods=["GET"], responses=_responses(401, 422, 503)
    )
    reads.add_api_route("/breakers", get_breakers, methods=["GET"], responses=_responses(401, 503))
    app.include_router(reads)
    app.include_router(api_actions.router)
    app.include_router(api_console.router)
    app.include_router(api_sagas.router)
    app.include_router(console.router)
    app.include_router(orders.router)
    app.include_router(approvals.router)
    app.include_router(dead_letters.router)
    app.include_router(definitions.router)
    app.include_router(saga_page.router)  # after orders: /console/sagas/order/live is the list's
    app.include_router(sagas_list.router)  # after orders: /console/sagas/order is the orders'
    console.mount_assets(app)
    api_docs.mount_docs(app)
    app.add_api_route(
        "/health",
        get_health,
        methods=["GET"],
        response_model_exclude_none=True,
        responses={503: {"model": Health, "description": "Not ready."}},
    )
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for unavailable in (StackError, asyncpg.PostgresError, OSError, KafkaError):
        app.add_exception_handler(unavailable, _unavailable)
    # More specific than PostgresError: Starlette picks the handler of the nearest class.
    app.add_exception_handler(asyncpg.CharacterNotInRepertoireError, _unstorable_text)
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=f"/health,/console/assets/.*,{api_docs.ASSETS}/.*",
        server_request_hook=_route_as_documented,
        client_request_hook=_route_as_documented,  # the request's receive and send spans
        client_response_hook=_route_as_documented,
    )
    # A key's escaped "/" stays in it (key_paths.py), outside the instrumentation too: it names
    # a request's span by matching the path to the routes, before the app's own middleware.
    instrumented = app.build_middleware_stack
    app.build_middleware_stack = lambda: EscapedSlashes(instrumented())  # type: ignore[method-assign]
    return app


def _route_as_documented(span: Span, *_: Any) -> None:
    """Name a request's span by its route as the API documents it (``/orders/{order_id}``),
    not with the converter that lets a key be any text (``{order_id:key}``)."""
    name: str = getattr(span, "name", "")  # the SDK's span has its name; the API's none
    if ":key}" in name and span.is_recording():
        span.update_name(documented(name))
        if not name.endswith((" http send", " http receive")):
            span.set_attribute("http.route", documented(name).partition(" ")[2])


class _Server(uvicorn.Server):
    """uvicorn that says when it listens, and exits 0 after a graceful SIGTERM/SIGINT."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else 0
            host = self.config.host
            log.info("%s ready: http://%s:%d", NAME, f"[{host}]" if ":" in host else host, port)

    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self.settings = settings

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn records the signal and raises it again after shutting down, so the process
        # would die of it (exit -15); a drained stop is a normal exit for Choreo processes.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        if not self.should_exit:
            log.info("%s stopping: finishing the requests in hand", NAME)
            # The stop's budget, as every Choreo process has (events.stopping): the pool's
            # close is bounded by what is left of it, and past it a thread ends the process.
            STOP.begin(self.settings.stop_timeout_ms / 1000, NAME)
        self.should_exit = True


def server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """How uvicorn serves ``app``: where (``CHOREO_API_HOST``/``PORT``), with Choreo's logging,
    and for how long a stop lets the requests in hand run."""
    api = ApiSettings()
    return uvicorn.Config(
        app,
        host=api.host,
        port=api.port,
        log_config=None,  # our handlers (JSON lines, redaction) on the root logger
        lifespan="on",
        server_header=False,
        # Requests still running then are cancelled (one waiting on a database that does not
        # answer), as the other processes' batch in hand is.
        timeout_graceful_shutdown=math.ceil(settings.stop_drain_timeout_ms / 1000),
    )


def run(settings: Settings | None = None) -> None:
    """Entry point of the API process: serve until SIGTERM/SIGINT, then finish the requests."""
    settings = settings or get_settings()
    configure_logging(NAME, settings)
    tracing.configure_telemetry(NAME, settings)
    config = server_config(settings, create_app(settings))
    try:
        _Server(config, settings).run()
    finally:
        tracing.shutdown_telemetry()
        STOP.reset()
        log.info("%s stopped", NAME)
