"""The statistics both the orders' overview (:mod:`projections.queries`) and each saga type's
activity (:mod:`projections.sagas_activity`) compute, as SQL over the rows either selects:
minutes of a window, latency per minute, step latency from the timelines' jsonb."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STEP_SAMPLE = 2_000
"""Step latency is over the latest this many sagas (of a type, or orders on the overview):
their timelines are read on every refresh of a page (every 2 to 3 s), 2,000 in 16 ms at
100,000 sagas, 10,000 in 80 ms; p50 and p95 of 2,000 are as telling, and recent sagas are what
an operator watches."""


def window_start(count: str) -> str:
    """When the window of the last ``count`` minutes (a parameter, e.g. ``$1``) begins: the
    start of its first minute."""
    return f"date_trunc('minute', now()) - make_interval(mins => {count} - 1)"


def minutes(count: str) -> str:
    """The window's minutes as ``minute``, oldest first (``count``: a parameter, e.g. ``$1``)."""
    return f"""
        generate_series(
            {window_start(count)}, date_trunc('minute', now()), interval '1 minute'
        ) AS minute
    """


def counts_per_minute(table: str, at: str, key: str, count: str, where: str = "true") -> str:
    """``minute, n``: how many rows of ``table`` (``where`` holds) have their time ``at`` in
    each minute of the window, its empty minutes too. ``at`` is compared as written, so a
    time an index is on (e.g. ``coalesce(placed_at, '-infinity')``) makes each minute a range
    of that index; ``key`` is a column never null in a row."""
    return f"""
        SELECT minute, count(t.{key}) AS n FROM {minutes(count)}
        LEFT JOIN {table} AS t
            ON {where} AND {at} >= minute AND {at} < minute + interval '1 minute'
        GROUP BY minute ORDER BY minute
    """


def latency_per_minute(ended: str, count: str) -> str:
    """``minute, n, p50, p95`` for each minute of the window of ``count`` minutes, of the rows
    ``ended`` selects as ``minute`` (when each ended) and ``ms`` (how long it took)."""
    return f"""
        WITH ended AS ({ended}), per_minute AS (
            SELECT minute, count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95
            FROM ended GROUP BY minute
        )
        SELECT minute, coalesce(p.n, 0) AS n, p.p50, p.p95 FROM {minutes(count)}
        LEFT JOIN per_minute AS p USING (minute)
        ORDER BY minute
    """


def latency_points(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of :func:`latency_per_minute` as JSON (``None`` in a minute where none ended)."""
    return [
        {
            "minute": r["minute"].isoformat(),
            "n": int(r["n"]),
            "p50": None if r["p50"] is None else round(float(r["p50"]), 1),
            "p95": None if r["p95"] is None else round(float(r["p95"]), 1),
        }
        for r in rows
    ]


def step_durations(timelines: str) -> str:
    """``step, n, p50, p95`` (ms, start → finish) of every finished step in the ``timeline``
    jsonb arrays the query ``timelines`` selects."""
    return f"""
        SELECT step->>'step' AS step, count(*) AS n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95
        FROM (
            SELECT step, 1000 * extract(epoch FROM
                (step->>'finished_at')::timestamptz - (step->>'started_at')::timestamptz
            ) AS ms
            FROM ({timelines}) AS latest, jsonb_array_elements(timeline) AS step
            WHERE step->>'finished_at' IS NOT NULL AND step->>'started_at' IS NOT NULL
        ) AS durations
        GROUP BY 1 ORDER BY 1
    """


def step_stats(rows: Sequence[Any]) -> dict[str, dict[str, float]]:
    """The rows of :func:`step_durations` as ``{step: {"count", "p50", "p95"}}``."""
    return {
        r["step"]: {"count": int(r["n"]), "p50": round(r["p50"], 1), "p95": round(r["p95"], 1)}
        for r in rows
    }
