"""`choreo bench console`: how fast the console renders over a large read model.

Fills a fresh deployment's read models (its own topic prefix, so its own projector schema)
with N sagas, 100,000 by default, written straight to PostgreSQL with ``COPY`` (not through
Kafka: what is measured is the pages, not the projector): each saga's events in
``event_log`` and its ``saga_status`` row, folded by the read model's own function
(:func:`projections.sagas_model.fold_saga`)
from synthetic flows of :mod:`bench.rebuild` (completed, approved, declined, shipment failed,
out of stock, and some still waiting for approval), placed a few seconds apart over days.
The tables get the projector's own keys and indexes after the load, then ``ANALYZE``.

Then it builds the API in this process (:func:`projections.api.create_app`), signs in, and
times HTTP GETs through it (httpx over ASGI: the whole request path, no network): each page
once cold (the first request of its kind) and the median of ``--repeat`` warm requests. The
pages: the orders list (first page, a deep page by its keyset cursor, filtered by status, by
cancel reason, searched by a part of an id), one saga's page (the newest, and one from the
middle), the approvals page, the sagas index and a type's list (returns: none among the
orders), the overview and ``GET /summary``. Finally it drops the bench's
schemas and topics.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from bench.rebuild import FLOWS, MIX, flow
from bench.report import machine_info
from choreo.platform import remove_deployment
from contracts.catalog import CATALOG
from events.database import Database
from events.settings import Settings, get_settings
from events.topics import provision_topics
from projections import PROJECTOR, sagas_activity, sagas_store, store
from projections.api import create_app
from projections.model import LoggedEvent
from projections.queries import Queries
from projections.sagas_model import fold_saga
from projections.tokens import ApiSettings, new_token
from sagas.order import V1 as ORDER
from sagas.shipped import SAGAS

WAITING = "waiting"
KINDS = (*MIX, WAITING)
"""The mix: :data:`bench.rebuild.MIX` and one in twelve still waiting for approval."""
T = TypeVar("T")
SPACING = timedelta(seconds=2)
"""Between two sagas' placing: 100,000 sagas span about two days."""
STEP = timedelta(milliseconds=150)
"""Between two events of one saga."""
BATCH = 10_000
Log = Callable[[str], None]


@dataclass
class Timing:
    """One page: the cold request's time and the warm ones' median, in milliseconds."""

    name: str
    path: str
    cold_ms: float
    warm_ms: list[float] = field(default_factory=list)
    status: int = 200
    size: int = 0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.warm_ms) if self.warm_ms else self.cold_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "status": self.status,
            "bytes": self.size,
            "cold_ms": round(self.cold_ms, 1),
            "warm_median_ms": round(self.median_ms, 1),
            "warm_ms": [round(t, 1) for t in self.warm_ms],
        }


@dataclass
class ConsoleBenchResult:
    """What ``choreo bench console`` measured."""

    sagas: int
    events: int
    prefix: str
    load_s: float
    index_s: float
    timings: list[Timing]
    machine: dict[str, Any] = field(default_factory=machine_info)

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "console",
            "sagas": self.sagas,
            "events": self.events,
            "prefix": self.prefix,
            "load_s": round(self.load_s, 2),
            "index_s": round(self.index_s, 2),
            "pages": [t.to_json() for t in self.timings],
            "machine": self.machine,
        }


def _templates() -> dict[str, list[tuple[str, dict[str, Any], str]]]:
    """Each kind's events as (event type, payload, producer), the payloads as JSON data."""
    kinds = {kind: flow("ord-template", kind) for kind in FLOWS}
    kinds[WAITING] = flow("ord-template", "approval")[:3]
    return {
        kind: [(m.envelope.event_type, m.event.model_dump(mode="json"), "bench") for m in messages]
        for kind, messages in kinds.items()
    }


def sagas(count: int, newest: datetime) -> Iterator[tuple[str, list[LoggedEvent]]]:
    """``count`` sagas' keys and events, the newest placed at ``newest``."""
    templates = _templates()
    kinds = itertools.cycle(KINDS)
    for i in range(count):
        key = f"ord-{i:06d}{uuid.uuid4().hex[:6]}"
        placed = newest - SPACING * (count - 1 - i)
        events = []
        for n, (event_type, payload, producer) in enumerate(templates[next(kinds)]):
            if event_type == "order.placed":
                payload = {
                    **payload,
                    "customer_id": f"cust-{i % 5000}",
                    "placed_at": placed.isoformat(),
                }
            events.append(
                LoggedEvent(
                    str(uuid.uuid4()), event_type, key, placed + STEP * n, producer, payload
                )
            )
        yield key, events


def _log_row(event: LoggedEvent, offset: int) -> tuple[Any, ...]:
    return store.LogRow(
        "bench", 0, offset, uuid.UUID(event.event_id), event.event_type, event.order_id,
        event.occurred_at, event.producer, 1, event.order_id, None, None,
        store.payload_json(event.payload),
        CATALOG[event.event_type].model_validate(event.payload).summary(),
    ).as_tuple()  # fmt: skip


async def fill(db: Database, schema: str, count: int, log: Log) -> tuple[int, float, float]:
    """COPY ``count`` sagas into ``schema``'s read models; then keys, indexes, ANALYZE.
    Returns (events written, load seconds, index seconds)."""
    await db.migrate(schema, *(s.replace("{schema}", schema) for s in store.ddl()))
    async with db.pool.acquire() as conn:
        for table in ("event_log", "saga_status"):
            await conn.execute(f"DROP TABLE {schema}.{table}")
        for statement in store.table_ddl(schema, indexes=False):
            await conn.execute(statement)
    started, events, done, chunk = time.perf_counter(), 0, 0, []
    for key, history in sagas(count, datetime.now(UTC) - timedelta(minutes=1)):
        chunk.append((key, history))
        if len(chunk) == BATCH:
            events += await _copy(db, schema, chunk, events)
            done += len(chunk)
            log(f"{done:,} sagas ({events:,} events) loaded")
            chunk = []
    if chunk:
        events += await _copy(db, schema, chunk, events)
    loaded = time.perf_counter()
    async with db.pool.acquire() as conn:
        keys = (store.log_key_ddl(schema), store.index_ddl(schema))
        for statement in (*keys, *sagas_store.index_ddl(schema)):
            await conn.execute(statement)
        await conn.execute(f"ANALYZE {schema}.event_log, {schema}.saga_status")
    return events, loaded - started, time.perf_counter() - loaded


async def _copy(
    db: Database, schema: str, chunk: Sequence[tuple[str, list[LoggedEvent]]], offset: int
) -> int:
    """COPY one chunk of sagas (their events and status rows); the events written."""
    log_rows = [
        _log_row(e, offset + n) for n, e in enumerate(e for _, history in chunk for e in history)
    ]
    views = [sagas_store.row_tuple(fold_saga(ORDER, key, history)) for key, history in chunk]
    async with db.pool.acquire() as conn:
        for table, columns, records in (
            ("event_log", store.EVENT_LOG_COLUMNS, log_rows),
            ("saga_status", sagas_store.SAGA_STATUS_COLUMNS, views),
        ):
            await conn.copy_records_to_table(
                table, schema_name=schema, columns=columns, records=records
            )
    return len(log_rows)


async def _time(client: httpx.AsyncClient, name: str, path: str, repeat: int) -> Timing:
    timing, response = await _time_call(name, path, lambda: client.get(path), repeat)
    timing.status, timing.size = response.status_code, len(response.content)
    return timing


async def _pages(db: Database, schema: str) -> list[tuple[str, str]]:
    """The pages to time: names and paths (the saga keys and cursor from the loaded rows)."""
    newest = await db.pool.fetchval(
        f"SELECT saga_key FROM {schema}.saga_status ORDER BY started_at DESC LIMIT 1"
    )
    middle = await db.pool.fetchrow(
        f"SELECT saga_key AS order_id, started_at AS placed_at FROM {schema}.saga_status"
        " ORDER BY started_at DESC"
        " OFFSET (SELECT count(*) / 2 FROM " + f"{schema}.saga_status) LIMIT 1"
    )
    after = httpx.QueryParams({"after": middle["order_id"]})
    cursor = httpx.QueryParams(
        {"after": f"{middle['placed_at'].isoformat()}|{middle['order_id']}", "page": "2000"}
    )
    return [
        ("orders list, first page", "/console/sagas/order"),
        ("orders list, middle page (keyset)", f"/console/sagas/order?{cursor}"),
        ("orders list, status cancelled", "/console/sagas/order?status=cancelled"),
        ("orders list, reason out_of_stock", "/console/sagas/order?reason=out_of_stock"),
        ("orders list, search an id part", "/console/sagas/order?q=ord-0500"),
        ("orders list, search a customer", "/console/sagas/order?q=cust-42"),
        ("saga page, newest", f"/console/sagas/order/{newest}"),
        ("saga page, middle", f"/console/sagas/order/{middle['order_id']}"),
        ("approvals page", "/console/approvals"),
        ("sagas index (every type by status)", "/console/sagas"),
        ("returns list (none among the orders)", "/console/sagas/return"),
        ("overview page", "/console"),
        ("GET /summary (JSON)", "/summary"),
        ("GET /sagas, every type, first page", "/sagas?limit=50"),
        ("GET /sagas, every type, after a middle key", f"/sagas?limit=50&{after}"),
        ("GET /sagas?type=order, after a middle key", f"/sagas?type=order&limit=50&{after}"),
    ]


async def measure(settings: Settings, schema: str, repeat: int, log: Log) -> list[Timing]:
    """Time every page of :func:`_pages` through the API in this process."""
    token, record = new_token("bench", "viewer")
    with tempfile.TemporaryDirectory() as here:  # no token file but the bench's own
        api = ApiSettings(tokens=[record], tokens_file=Path(here) / "api-tokens.json")
        return await _measure(create_app(settings, api), token, settings, schema, repeat, log)


async def _measure(
    app: FastAPI, token: str, settings: Settings, schema: str, repeat: int, log: Log
) -> list[Timing]:
    async with Database(settings) as db:
        pages = await _pages(db, schema)
    transport = httpx.ASGITransport(app=app)
    timings = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as client,
    ):
        signed = await client.post("/console/sign-in", data={"token": token})
        if signed.status_code != 303:
            raise RuntimeError(f"sign-in failed: {signed.status_code}")
        client.headers["Authorization"] = f"Bearer {token}"  # for the JSON endpoint
        for name, path in pages:
            timing = await _time(client, name, path, repeat)
            log(f"{name}: {timing.cold_ms:.0f} ms cold, {timing.median_ms:.0f} ms warm")
            timings.append(timing)
    # A type's page draws its activity over every saga of the type: the loaded sagas are all
    # orders, whose own page is the orders list, so the queries are timed by themselves.
    async with Database(settings) as db:
        queries = Queries(db, settings)
        name = "a type's activity (every saga of the type)"
        timing, _ = await _time_call(
            name, "sagas_activity.activity('order')",
            lambda: sagas_activity.activity(queries, SAGAS, ORDER.saga_type), repeat,
        )  # fmt: skip
        log(f"{name}: {timing.cold_ms:.0f} ms cold, {timing.median_ms:.0f} ms warm")
        timings.append(timing)
    return timings


async def _time_call(
    name: str, label: str, call: Callable[[], Awaitable[T]], repeat: int
) -> tuple[Timing, T]:
    """``call``'s first (cold) time and ``repeat`` more (warm), with what the first returned."""
    started = time.perf_counter()
    first = await call()
    timing = Timing(name, label, 1000 * (time.perf_counter() - started))
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        timing.warm_ms.append(1000 * (time.perf_counter() - started))
    return timing, first


async def run_async(count: int, repeat: int, log: Log, keep: bool = False) -> ConsoleBenchResult:
    """Fill, measure, clean up (unless ``keep``)."""
    settings = get_settings().model_copy(update={"topic_prefix": f"benchui{uuid.uuid4().hex[:8]}."})
    schema = PROJECTOR.schema(settings)
    await provision_topics(settings)  # the overview reads the dead-letter topic and lag
    try:
        async with Database(settings) as db:
            log(f"loading {count:,} sagas into {schema}")
            events, load_s, index_s = await fill(db, schema, count, log)
        log(f"{events:,} events loaded in {load_s:.1f} s, indexed in {index_s:.1f} s")
        timings = await measure(settings, schema, repeat, log)
    finally:
        if not keep:
            await remove_deployment(settings)  # its topics, schemas and roles
    return ConsoleBenchResult(count, events, settings.topic_prefix, load_s, index_s, timings)


def run(
    count: int = 100_000, repeat: int = 5, log: Log = print, keep: bool = False
) -> ConsoleBenchResult:
    """:func:`run_async` in a fresh event loop."""
    return asyncio.run(run_async(count, repeat, log, keep))
