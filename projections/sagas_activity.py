"""How one saga type's sagas are doing, from the generic read model (``saga_status``): sagas
started per minute, latency (start → end) per minute, each step's latency and the reasons
sagas were cancelled for. What the overview shows for orders, for any type the coordinator
runs: a team's own saga included. The console draws it above each type's list.
"""

from __future__ import annotations

import asyncio
from typing import Any

from projections import stats_sql
from projections.queries import Queries
from projections.sagas_model import CANCELLED, ENDED
from projections.sagas_store import STARTED, TYPE_LIST_KEY
from sagas.registry import SagaRegistry

MINUTES = 30
"""The charts' window."""


async def activity(
    queries: Queries, definitions: SagaRegistry, saga_type: str, *, minutes: int = MINUTES
) -> dict[str, Any]:
    """``started`` and ``latency`` per minute over the last ``minutes`` (oldest first, empty
    minutes too), ``steps`` (p50/p95 ms and count of each step's duration over the type's
    latest :data:`~projections.stats_sql.STEP_SAMPLE` sagas, in the order ``definitions``
    draw them) and ``reasons`` (cancelled sagas per reason)."""
    started, latency, steps, reasons = await asyncio.gather(
        started_per_minute(queries, saga_type, minutes=minutes),
        latency_per_minute(queries, saga_type, minutes=minutes),
        step_durations(queries, saga_type),
        cancel_reasons(queries, saga_type),
    )
    steps = in_path_order(definitions, saga_type, steps)
    return {"started": started, "latency": latency, "steps": steps, "reasons": reasons}


def in_path_order(
    definitions: SagaRegistry, saga_type: str, steps: dict[str, Any]
) -> dict[str, Any]:
    """``steps`` (by step name) in the order the type's definitions draw them (any other
    name, of a retired version, after)."""
    names = [n.name for d in definitions if d.saga_type == saga_type for n in d.nodes]
    ranked = {name: rank for rank, name in enumerate(dict.fromkeys(names))}
    return dict(sorted(steps.items(), key=lambda kv: (ranked.get(kv[0], len(ranked)), kv[0])))


async def started_per_minute(
    queries: Queries, saga_type: str, *, minutes: int = MINUTES
) -> list[dict[str, Any]]:
    """Sagas of ``saga_type`` started in each of the last ``minutes`` minutes (``{"minute",
    "started"}``), each minute a range of a list index."""
    counts = stats_sql.counts_per_minute(
        f"{queries.schema}.saga_status", STARTED, "saga_key", "$2", where="t.saga_type = $1"
    )
    rows = await queries.db.pool.fetch(counts, saga_type, minutes)
    return [{"minute": r["minute"].isoformat(), "started": int(r["n"])} for r in rows]


async def latency_per_minute(
    queries: Queries, saga_type: str, *, minutes: int = MINUTES
) -> list[dict[str, Any]]:
    """Start → end of the sagas of ``saga_type`` that ended in each of the last ``minutes``
    minutes: ``n``, ``p50`` and ``p95`` in ms (``None`` in a minute where none ended)."""
    rows = await queries.db.pool.fetch(
        stats_sql.latency_per_minute(ended_sql(queries.schema), "$1"),
        minutes,
        saga_type,
        sorted(ENDED),
    )
    return stats_sql.latency_points(rows)


def ended_sql(schema: str) -> str:
    """``minute, ms``: when each saga of type ``$2`` in a status of ``$3`` ended in the window
    of ``$1`` minutes, and how long it took (a range of the ended sagas' index)."""
    return f"""
        SELECT date_trunc('minute', ended_at) AS minute,
               1000 * extract(epoch FROM ended_at - started_at) AS ms
        FROM {schema}.saga_status
        WHERE saga_type = $2 AND status = ANY($3::text[]) AND started_at IS NOT NULL
          AND ended_at >= {stats_sql.window_start("$1")}
    """


async def step_durations(queries: Queries, saga_type: str) -> dict[str, dict[str, float]]:
    """Each step's (and human task's) start → finish over the type's latest
    :data:`~projections.stats_sql.STEP_SAMPLE` sagas: ``{step: {"count", "p50", "p95"}}``."""
    rows = await queries.db.pool.fetch(
        stats_sql.step_durations(
            f"SELECT timeline FROM {queries.schema}.saga_status"
            f" WHERE saga_type = $1 ORDER BY {TYPE_LIST_KEY} LIMIT $2"
        ),
        saga_type,
        stats_sql.STEP_SAMPLE,
    )
    return stats_sql.step_stats(rows)


async def cancel_reasons(queries: Queries, saga_type: str) -> dict[str, int]:
    """How many sagas of ``saga_type`` were cancelled for each reason."""
    rows = await queries.db.pool.fetch(
        f"SELECT reason, count(*) AS n FROM {queries.schema}.saga_status"
        " WHERE saga_type = $1 AND status = $2 GROUP BY reason",
        saga_type,
        CANCELLED,
    )
    return {r["reason"] or "unknown": int(r["n"]) for r in rows}
