"""Read-side queries over ``saga_status``, shared by the CLI (`choreo sagas`) and the HTTP API
(``/sagas``): plain JSON-ready data, so every front end shows the same fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from projections import sagas_store
from projections.queries import Queries, keyset
from projections.sagas_model import AWAITING
from projections.sagas_store import STARTED, row_json
from sagas.registry import SagaRegistry


async def saga(queries: Queries, saga_type: str, saga_key: str) -> dict[str, Any] | None:
    """One saga's row: status, steps with their timeline, compensations, progress."""
    row = await queries.db.pool.fetchrow(
        f"SELECT * FROM {queries.schema}.saga_status WHERE saga_type = $1 AND saga_key = $2",
        saga_type,
        saga_key,
    )
    return None if row is None else row_json(row)


async def named_by(
    queries: Queries, registry: SagaRegistry, saga_type: str, saga_key: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest ``limit`` sagas of the types whose start captures a ``saga_type`` saga's key
    under its name (:meth:`SagaRegistry.naming`: an order's returns) that captured
    ``saga_key``: type, key, status. Their type's list index narrows the rows to those
    types; only theirs are read."""
    saga_types = registry.naming(saga_type)
    if not saga_types:
        return []
    rows = await queries.db.pool.fetch(
        f"SELECT saga_type, saga_key, status FROM {queries.schema}.saga_status"
        f" WHERE saga_type = ANY($1::text[]) AND attributes ->> $2 = $3"
        f" ORDER BY {STARTED} DESC, saga_key LIMIT $4",
        saga_types,
        registry.current(saga_type).key,
        saga_key,
        limit,
    )
    return [dict(row) for row in rows]


def waiting_on(row: dict[str, Any]) -> str | None:
    """The human task a saga's row (as :func:`saga` returns it) waits on for a person's
    answer, if any."""
    return next((s["step"] for s in row["steps"] if s["state"] == AWAITING), None)


async def key_owner(queries: Queries, saga_key: str) -> tuple[str, str] | None:
    """The type and status of the saga keyed ``saga_key`` (of any type), if there is one."""
    row = await queries.db.pool.fetchrow(
        f"SELECT saga_type, status FROM {queries.schema}.saga_status WHERE saga_key = $1 LIMIT 1",
        saga_key,
    )
    return None if row is None else (row["saga_type"], row["status"])


async def history(queries: Queries, saga_type: str, saga_key: str) -> list[dict[str, Any]] | None:
    """The saga's events in log order (the audit trail of its key); ``None`` if there is no
    such saga."""
    if await saga(queries, saga_type, saga_key) is None:
        return None
    return await queries.history(saga_key)


SagaCursor = tuple[datetime | None, str]
"""A position in one type's newest-first list: a row's ``started_at`` and ``saga_key``."""

_STARTED = sagas_store.STARTED
_OLDER, _NEWER = keyset(_STARTED, "saga_key", "$4", "$5")
_TYPE_FILTER = (
    "saga_type = $1 AND ($2::text IS NULL OR status = $2)"
    " AND ($3::text IS NULL OR strpos(saga_key, $3) > 0)"
)


async def saga_page(
    queries: Queries,
    saga_type: str | None,
    *,
    status: str | None = None,
    search: str | None = None,
    cursor: SagaCursor | None = None,
    direction: Literal["older", "newer"] = "older",
    limit: int = 25,
) -> list[dict[str, Any]]:
    """A page of one type's sagas (``None``: of every type; in ``status``, their key
    containing ``search``), newest first, by keyset: the ``limit`` rows just older than
    ``cursor`` (or just newer, with ``direction="newer"``); the newest without one. No
    OFFSET: one type's page starts from its index (``sagas_store.TYPE_LIST_KEY``), every
    type's from another (``sagas_store.LIST_KEY``)."""
    keyset, order = "$4::timestamptz IS NULL", f"{_STARTED} DESC, saga_key"
    if cursor is not None:
        keyset = _OLDER if direction == "older" else _NEWER
        if direction == "newer":
            order = f"{_STARTED} ASC, saga_key DESC"
    where, sort = _TYPE_FILTER, f"saga_type, {order}"
    if saga_type is None:  # no type: the same parameters, $1 NULL
        where, sort = _TYPE_FILTER.replace("saga_type = $1", "$1::text IS NULL"), order
    rows = await queries.db.pool.fetch(
        f"SELECT * FROM {queries.schema}.saga_status"
        f" WHERE {where} AND ($5::text IS NULL OR {keyset})"
        f" ORDER BY {sort} LIMIT $6",
        saga_type,
        status,
        search,
        cursor[0] if cursor else None,
        cursor[1] if cursor else None,
        limit,
    )
    views = [row_json(r) for r in rows]
    return views[::-1] if cursor is not None and direction == "newer" else views


async def position_of(
    queries: Queries, saga_key: str, saga_type: str | None = None
) -> SagaCursor | None:
    """Where the saga ``saga_key`` (of ``saga_type``, if given) is in a newest-first list: the
    cursor a page after it starts from; None if there is no such saga."""
    row = await queries.db.pool.fetchrow(
        f"SELECT started_at, saga_key FROM {queries.schema}.saga_status"
        " WHERE saga_key = $1 AND ($2::text IS NULL OR saga_type = $2) LIMIT 1",
        saga_key,
        saga_type,
    )
    return None if row is None else (row["started_at"], row["saga_key"])


async def count_by_status(
    queries: Queries, saga_type: str, *, search: str | None = None
) -> dict[str, int]:
    """How many sagas of ``saga_type`` (their key containing ``search``) are in each status."""
    rows = await queries.db.pool.fetch(
        f"SELECT status, count(*) AS n FROM {queries.schema}.saga_status"
        f" WHERE {_TYPE_FILTER} GROUP BY status",
        saga_type,
        None,
        search,
    )
    return {r["status"]: int(r["n"]) for r in rows}


async def count_by_type(queries: Queries) -> dict[str, dict[str, int]]:
    """How many sagas of each type are in each status."""
    rows = await queries.db.pool.fetch(
        f"SELECT saga_type, status, count(*) AS n FROM {queries.schema}.saga_status"
        " GROUP BY saga_type, status"
    )
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["saga_type"], {})[r["status"]] = int(r["n"])
    return counts
