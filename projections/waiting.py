"""The inbox of human tasks: sagas of every type waiting for a person's answer.

A saga waits for a person while one of its human tasks is ``awaiting`` (its status is then
the task's ``waiting_status``, or ``needs_attention`` once a timeout that escalates passed:
such a task keeps waiting, and is the one most in need of an answer). Each entry is the
saga's row (as :func:`projections.sagas_queries.saga` returns it) with what the front ends
show beside it: the task, when it was asked and when it expires, what its definition does
then, and the amounts the request names. The request is the task's latest request event in
the log (the event its step was started by); its expiry is the request's ``expires_at``
where it has one (both shipped tasks publish it), else the request's time plus the task's
timeout.

Only amounts (the request's ``*_minor`` integers, with its ``currency``) are shown of the
request: they say what is asked without showing a team's fields that may be personal.
Shared by the HTTP API (``GET /sagas/waiting``), the console's approvals page and
`choreo sagas waiting`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from projections.amounts import amounts
from projections.queries import Queries
from projections.sagas_model import AWAITING, NEEDS_ATTENTION
from projections.sagas_store import row_json
from sagas.definition import HumanTask
from sagas.registry import SagaRegistry


async def waiting(
    queries: Queries,
    definitions: SagaRegistry,
    *,
    saga_type: str | None = None,
    limit: int = 200,
) -> tuple[list[dict[str, Any]], int]:
    """Sagas waiting for a person's answer, the soonest to expire first (at most ``limit``),
    and how many wait in all.

    Every waiting saga's times are read first, a few fields each (an expiry may come from
    its definition's timeout, so they are sorted here, not in SQL), then the whole rows of
    the ``limit`` soonest to expire.
    """
    statuses = waiting_statuses(definitions)
    s = queries.schema
    waiting_with_requests = f"""
        FROM {s}.saga_status AS s
        CROSS JOIN LATERAL ({_AWAITED}) AS t
        LEFT JOIN LATERAL (
            SELECT e.payload, e.occurred_at FROM {s}.event_log AS e
            WHERE e.order_id = s.saga_key AND e.event_type = t.step->>'started_by'
            ORDER BY e.position DESC LIMIT 1
        ) AS r ON true
    """
    every = await queries.db.pool.fetch(
        f"""
        SELECT s.saga_type, s.saga_key, s.version, t.step->>'step' AS task,
               t.step->>'started_at' AS started_at, r.occurred_at AS requested,
               r.payload->>'requested_at' AS requested_at, r.payload->>'expires_at' AS expires_at
        {waiting_with_requests}
        WHERE s.status = ANY($1::text[]) AND ($2::text IS NULL OR s.saga_type = $2)
        """,
        statuses,
        saga_type,
    )
    timed = sorted(((RequestTimes.of(definitions, r), r) for r in every), key=_soonest_first)
    timed = timed[:limit]
    rows = await queries.db.pool.fetch(
        f"""
        SELECT s.*, t.step->>'step' AS task, r.payload::text AS request
        {waiting_with_requests}
        WHERE (s.saga_type, s.saga_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
        """,
        [r["saga_type"] for _, r in timed],
        [r["saga_key"] for _, r in timed],
    )
    by_saga = {(r["saga_type"], r["saga_key"]): r for r in rows}
    entries = [
        entry(definitions, by_saga[key], times)
        for times, r in timed
        if (key := (r["saga_type"], r["saga_key"])) in by_saga  # not answered meanwhile
    ]
    return entries, len(every)


def waiting_statuses(definitions: SagaRegistry) -> list[str]:
    """The statuses of a saga waiting for a person: its human tasks' waiting statuses, and
    needing attention (a task whose timeout escalates keeps waiting for its answer then)."""
    return sorted({t.waiting_status for d in definitions for t in d.tasks} | {NEEDS_ATTENTION})


_AWAITED = f"""
    SELECT step FROM jsonb_array_elements(s.timeline) AS step
    WHERE step->>'state' = '{AWAITING}' LIMIT 1
"""
"""A saga row's (``s``) step that waits for a person's answer."""


async def count(queries: Queries, definitions: SagaRegistry) -> int:
    """How many sagas of every type wait for a person's answer (the status index finds them;
    of those needing attention, the ones with a task still waiting)."""
    found: int = await queries.db.pool.fetchval(
        f"SELECT count(*) FROM {queries.schema}.saga_status AS s"
        f" WHERE status = ANY($1::text[]) AND (status <> $2 OR EXISTS ({_AWAITED}))",
        waiting_statuses(definitions),
        NEEDS_ATTENTION,
    )
    return found


class RequestTimes(NamedTuple):
    """When a saga's task was asked and when its request expires."""

    asked: datetime | None
    expires: datetime | None

    @classmethod
    def of(cls, definitions: SagaRegistry, row: Any) -> RequestTimes:
        """From the request's ``requested_at`` and ``expires_at`` where it has them, else the
        request's log time (or the step's start) and that plus the task's timeout."""
        asked = _moment(row["requested_at"]) or row["requested"] or _moment(row["started_at"])
        expires = _moment(row["expires_at"])
        task = _task(definitions, row["saga_type"], row["version"], row["task"])
        if expires is None and asked is not None and task is not None:
            d = definitions.get(row["saga_type"], row["version"])
            timeout = d.value(task.timeout)
            expires = asked + timeout if isinstance(timeout, timedelta) else None
        return cls(asked, expires)


def _soonest_first(timed: tuple[RequestTimes, Any]) -> tuple[bool, Any, str, str]:
    (_, expires), row = timed
    return (expires is None, expires, row["saga_type"], row["saga_key"])


def entry(definitions: SagaRegistry, row: Any, times: RequestTimes) -> dict[str, Any]:
    """A waiting saga's entry from its row (``saga_status`` with ``task`` and the request's
    ``payload`` as ``request``) and its times."""
    saga = row_json(row)
    request: dict[str, Any] = orjson.loads(row["request"]) if row["request"] else {}
    task = _task(definitions, saga["saga_type"], saga["version"], row["task"])
    on_timeout = "-"  # a version or task this process does not know
    if task is not None:
        d = definitions.get(saga["saga_type"], saga["version"])
        on_timeout = str(d.value(task.on_timeout))
    return {
        "saga": saga,
        "escalated": saga["status"] == NEEDS_ATTENTION,
        "task": row["task"],
        "requested_at": times.asked.isoformat() if times.asked else None,
        "expires_at": times.expires.isoformat() if times.expires else None,
        "on_timeout": on_timeout,
        "amounts": amounts(request),
    }


def _task(definitions: SagaRegistry, saga_type: str, version: int, name: str) -> HumanTask | None:
    """The task ``name`` of the definition (None for a version or task this process lacks)."""
    try:
        node = definitions.get(saga_type, version).node(name)
    except KeyError:
        return None
    return node if isinstance(node, HumanTask) else None


def _moment(value: Any) -> datetime | None:
    """A time from the log (a time without a zone is UTC, as Avro's are), or None."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
