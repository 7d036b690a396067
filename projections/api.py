"""The HTTP JSON API over the read models: order status (with time travel), lists, history.

:func:`create_app` builds the FastAPI application; every endpoint is a thin adapter over
:class:`~projections.queries.Queries`, so the API shows exactly what the CLI shows. Responses
are typed pydantic models (described at ``/openapi.json`` and ``/docs``), and every error has
one shape: ``{"error": "<code>", "detail": "<text>"}`` (plus ``fields`` on a 422). The API only
reads: it never writes the projector's tables.

:func:`run` is the ``api`` process of `choreo run`: uvicorn on ``CHOREO_API_HOST`` /
``CHOREO_API_PORT``, traced (``service.name=api``), stopped gracefully by SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import Annotated, Any

import asyncpg
import uvicorn
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from events import tracing
from events.database import Database
from events.errors import StackError
from events.logs import configure_logging
from events.settings import Settings, get_settings
from projections import API
from projections.api_models import (
    ErrorBody,
    ErrorField,
    Health,
    HistoryEntry,
    OrderHistory,
    OrderList,
    OrderStatus,
    Projections,
    ProjectionStatus,
    StatusName,
    Summary,
)
from projections.queries import Queries

NAME = API.name
log = logging.getLogger("choreo.api")

HEALTH_TIMEOUT_S = 5.0
"""How long ``/health`` waits for PostgreSQL before it reports the database down."""


class ApiSettings(BaseSettings):
    """Where the API listens (``CHOREO_API_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_API_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Interface the API binds to.")
    port: int = Field(
        default=8080, ge=0, le=65535, description="TCP port of the API (0: any free port)."
    )


def _package_version() -> str:
    try:
        return version("choreo")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


# --- response models -------------------------------------------------------------------------


class Backend:
    """The API's connection to the read models; connects lazily if PostgreSQL was down at start."""

    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings)
        self.queries = Queries(self.db, settings)
        self._lock = asyncio.Lock()

    async def connect(self) -> Queries:
        """The queries, on a started pool (started here once, if the lifespan could not)."""
        async with self._lock:  # two concurrent first requests must not open two pools
            await self.db.start()
        return self.queries

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        await self.db.stop()


async def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


async def _queries(backend: Annotated[Backend, Depends(_backend)]) -> Queries:
    return await backend.connect()


QueriesDep = Annotated[Queries, Depends(_queries)]
BackendDep = Annotated[Backend, Depends(_backend)]


OrderId = Annotated[str, Path(min_length=1, max_length=200, description="e.g. `ord-1a2b3c4d5e6f`")]


def _utc(moment: datetime | None) -> datetime | None:
    """A query time; one without a zone is taken as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _not_found(order_id: str, as_of: datetime | None = None) -> HTTPException:
    when = f" as of {as_of.isoformat()}" if as_of is not None else ""
    return HTTPException(HTTPStatus.NOT_FOUND, f"no order {order_id}{when}")


_ERRORS: dict[int | str, dict[str, Any]] = {
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
        datetime | None,
        Query(
            description="ISO 8601 time (UTC if it has no zone): the order's state as of then, "
            "folded from the event log."
        ),
    ] = None,
) -> OrderStatus:
    """The status of one order, now or as of a past time (time travel)."""
    as_of = _utc(as_of)
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
        datetime | None, Query(description="Only orders placed at or after this ISO 8601 time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many orders.")] = 50,
) -> OrderList:
    """Orders, newest first, optionally of one status and placed since a time."""
    rows = await queries.orders(status=status, since=_utc(since), limit=limit)
    return OrderList(orders=[OrderStatus.model_validate(r) for r in rows], count=len(rows))


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
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    response = _error(exc.status_code, code, str(exc.detail))
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


async def _unavailable(request: Request, exc: Exception) -> Response:
    if isinstance(exc, asyncpg.UndefinedTableError):
        return _error(503, "not_ready", "no read models yet: is the projector running?")
    log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return _error(503, "unavailable", f"{type(exc).__name__}: {exc}")


# --- the application ---------------------------------------------------------------------------


def create_app(settings: Settings) -> FastAPI:
    """The API over the read models of the deployment ``settings`` names (its topic prefix)."""
    backend = Backend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await backend.connect()
        except StackError as exc:  # serve anyway: /health says 503, requests retry connecting
            log.warning("PostgreSQL unavailable at start, retrying per request: %s", exc)
        try:
            yield
        finally:
            await backend.close()

    app = FastAPI(
        title="Choreo API",
        version=_package_version(),
        description="Read-only JSON API over Choreo's read models: order status (also as of a "
        "past time), order lists, audit trails, the projector's progress and a summary.",
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.add_api_route(
        "/orders/{order_id}", get_order, methods=["GET"], responses=_responses(404, 422, 503)
    )
    app.add_api_route("/orders", list_orders, methods=["GET"], responses=_responses(422, 503))
    app.add_api_route(
        "/orders/{order_id}/history",
        get_history,
        methods=["GET"],
        responses=_responses(404, 422, 503),
    )
    app.add_api_route("/projections", get_projections, methods=["GET"], responses=_responses(503))
    app.add_api_route("/summary", get_summary, methods=["GET"], responses=_responses(422, 503))
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
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/health")
    return app


class _Server(uvicorn.Server):
    """uvicorn that says when it listens, and exits 0 after a graceful SIGTERM/SIGINT."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else 0
            host = self.config.host
            log.info("%s ready: http://%s:%d", NAME, f"[{host}]" if ":" in host else host, port)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn records the signal and raises it again after shutting down, so the process
        # would die of it (exit -15); a drained stop is a normal exit for Choreo processes.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def run(settings: Settings | None = None) -> None:
    """Entry point of the API process: serve until SIGTERM/SIGINT, then finish the requests."""
    settings = settings or get_settings()
    configure_logging(NAME, settings.log_level, settings.log_format)
    tracing.configure_tracing(NAME, settings)
    api = ApiSettings()
    config = uvicorn.Config(
        create_app(settings),
        host=api.host,
        port=api.port,
        log_config=None,  # our handlers (JSON lines, redaction) on the root logger
        lifespan="on",
        server_header=False,
    )
    try:
        _Server(config).run()
    finally:
        tracing.shutdown_tracing()
        log.info("%s stopped", NAME)
