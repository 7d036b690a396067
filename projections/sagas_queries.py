"""Read-side queries over ``saga_status``, shared by the CLI (`choreo sagas`) and the HTTP API
(``/sagas``): plain JSON-ready data, so every front end shows the same fields."""

from __future__ import annotations

from typing import Any

from projections.queries import Queries
from projections.sagas_model import AWAITING
from projections.sagas_store import row_json


async def sagas(
    queries: Queries,
    *,
    saga_type: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Sagas, newest first, optionally of one type and one status."""
    rows = await queries.db.pool.fetch(
        f"SELECT * FROM {queries.schema}.saga_status"
        " WHERE ($1::text IS NULL OR saga_type = $1) AND ($2::text IS NULL OR status = $2)"
        " ORDER BY started_at DESC NULLS LAST, saga_type, saga_key LIMIT $3",
        saga_type,
        status,
        limit,
    )
    return [row_json(r) for r in rows]


async def saga(queries: Queries, saga_type: str, saga_key: str) -> dict[str, Any] | None:
    """One saga's row: status, steps with their timeline, compensations, progress."""
    row = await queries.db.pool.fetchrow(
        f"SELECT * FROM {queries.schema}.saga_status WHERE saga_type = $1 AND saga_key = $2",
        saga_type,
        saga_key,
    )
    return None if row is None else row_json(row)


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
