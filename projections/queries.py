"""Read-side queries over the projector's tables, shared by the CLI and the HTTP API.

All functions take a :class:`~events.database.Database` and return plain JSON-ready data
(``dict``/``list``), so every front end shows the same fields.

The order endpoints are the order saga's sagas in the generic read model (``saga_status``),
in the orders API's words (:func:`order_json`): the model knows no saga by name; this façade
knows the one type whose sagas the orders API, CLI and console list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from events.database import Database
from events.security import kafka_options
from events.settings import Settings
from events.topics import event_topics, partitions_of
from projections import PROJECTOR, sagas_store, stats_sql, store
from projections.sagas_model import fold_saga, stage
from projections.sagas_store import STAGE, STARTED
from sagas.order import V1 as ORDER_SAGA

ORDER_TYPE = ORDER_SAGA.saga_type
"""The saga type the orders API, CLI and console pages show."""
ORDERS = f"saga_type = '{ORDER_TYPE}'"
"""The ``saga_status`` rows the order endpoints read."""
ORDER_LIST_KEY = sagas_store.TYPE_LIST_KEY
"""The orders list's sort, newest started first: one type's list index serves it."""


def order_json(saga: dict[str, Any]) -> dict[str, Any]:
    """A saga of the order type (as :meth:`SagaView.to_json` shows it) in the orders API's
    words: its stage as ``status``, the start event's captures as the order's fields."""
    captured = saga["attributes"]
    return {
        "order_id": saga["saga_key"],
        "status": stage(saga["status"], saga["milestone"]),
        "cancel_reason": saga["reason"],
        "current_step": next(iter(saga["current_steps"]), None),
        "timeline": saga["steps"],
        "progress": saga["progress"],
        "compensations_done": sorted(
            c["command"] for c in saga["compensations"] if c["acknowledged_at"] is not None
        ),
        "trace_id": saga["trace_id"],
        "customer_id": captured.get("customer_id"),
        "total_minor": captured.get("total_minor"),
        "currency": captured.get("currency"),
        "placed_at": saga["started_at"],
        "updated_at": saga["updated_at"],
        "event_count": saga["event_count"],
    }


def _order(row: Any) -> dict[str, Any]:
    return order_json(sagas_store.row_json(row))


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Which orders a list shows; ``None`` leaves a field unfiltered.

    Attributes:
        status: Orders in this status.
        reason: Orders cancelled for this reason.
        since: Placed at or after this time.
        until: Placed before this time.
        search: A part of the order id, or the whole customer id.
    """

    status: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None

    def params(self) -> tuple[Any, ...]:
        """The values of :data:`ORDER_FILTER_SQL`'s ``$1`` to ``$5``."""
        return (self.status, self.reason, self.since, self.until, self.search)


# Times compare through STARTED, the expression the list index is on (a saga without a start
# time, sorted as -infinity, is before no time).
ORDER_FILTER_SQL = f"""
    {ORDERS}
    AND ($1::text IS NULL OR {STAGE} = $1)
    AND ($2::text IS NULL OR reason = $2)
    AND ($3::timestamptz IS NULL OR {STARTED} >= $3)
    AND ($4::timestamptz IS NULL OR {STARTED} < $4 AND started_at IS NOT NULL)
    AND ($5::text IS NULL OR strpos(saga_key, $5) > 0 OR attributes->>'customer_id' = $5)
"""
"""The ``WHERE`` of an :class:`OrderFilter` (parameters ``$1`` to ``$5``)."""

Cursor = tuple[datetime | None, str]
"""A position in the newest-first order list: a row's ``placed_at`` and ``order_id``."""


def keyset(moment: str, key: str, at: str, at_key: str) -> tuple[str, str]:
    """The conditions for the rows after a cursor (older) and before it (newer) in a list
    sorted by ``moment DESC, key`` (``moment`` an expression that is ``-infinity`` for a row
    without a time; ``at``, ``at_key`` the cursor's parameters). Each bound on the sort's
    first column is written apart from the tie on the key, so that it is an index condition:
    a deep page costs what the first does."""
    older = f"""
        CASE WHEN {at}::timestamptz IS NULL THEN {moment} = '-infinity' AND {key} > {at_key}
        ELSE {moment} <= {at} AND ({moment} < {at} OR {key} > {at_key}) END
    """
    newer = f"""
        CASE WHEN {at}::timestamptz IS NULL THEN {moment} > '-infinity' OR {key} < {at_key}
        ELSE {moment} >= {at} AND ({moment} > {at} OR {key} < {at_key}) END
    """
    return older, newer


# Newest started first, orders without a start time last.
_OLDER, _NEWER = keyset(STARTED, "saga_key", "$6", "$7")
_STATUS_SINCE = f"""
    {ORDERS} AND ($1::text IS NULL OR {STAGE} = $1)
    AND ($2::timestamptz IS NULL OR {STARTED} >= $2)
"""


class Queries:
    """The read models of one deployment (its topic prefix names the projector's schema)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.schema = PROJECTOR.schema(settings)

    async def ready(self) -> bool:
        """Whether the projector has created its tables yet."""
        found = await self.db.pool.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f"{self.schema}.saga_status"
        )
        return bool(found)

    async def status(
        self, order_id: str, *, as_of: datetime | None = None
    ) -> dict[str, Any] | None:
        """An order's state, or its state as of a time, folded from the log."""
        async with self.db.pool.acquire() as conn:
            if as_of is not None:
                events = await store.load_events(conn, self.schema, [order_id], as_of=as_of)
                if not events.get(order_id):
                    return None  # not there yet
                known = await sagas_store.known(conn, self.schema, [order_id])
                d = sagas_store.saga_of(events[order_id], known.get(order_id))
                if d is None or d.saga_type != ORDER_TYPE:
                    return None
                view = fold_saga(d, order_id, events[order_id])
                return {**order_json(view.to_json()), "as_of": as_of.isoformat()}
            row = await conn.fetchrow(
                f"SELECT * FROM {self.schema}.saga_status WHERE {ORDERS} AND saga_key = $1",
                order_id,
            )
        return None if row is None else _order(row)

    async def traceparent(self, order_id: str, start: str = "order.placed") -> str | None:
        """The W3C ``traceparent`` the saga's start event (``order.placed`` for an order) was
        published with: the saga's trace."""
        value: str | None = await self.db.pool.fetchval(
            f"SELECT traceparent FROM {self.schema}.event_log"
            " WHERE order_id = $1 AND event_type = $2 ORDER BY position LIMIT 1",
            order_id,
            start,
        )
        return value

    async def completion_notes(self, order_id: str) -> list[str]:
        """The notes ``order.completed`` carries (e.g. a confirmation email that failed)."""
        notes: str | None = await self.db.pool.fetchval(
            f"SELECT payload->'notes' FROM {self.schema}.event_log"
            " WHERE order_id = $1 AND event_type = 'order.completed' ORDER BY position LIMIT 1",
            order_id,
        )
        return list(orjson.loads(notes)) if notes else []

    async def orders(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Orders, newest first, optionally of one status and placed since a time; the page
        of ``limit`` after the first ``offset``."""
        rows = await self.db.pool.fetch(
            f"SELECT * FROM {self.schema}.saga_status WHERE {_STATUS_SINCE}"
            f" ORDER BY {ORDER_LIST_KEY} LIMIT $3 OFFSET $4",
            status,
            since,
            limit,
            offset,
        )
        return [_order(r) for r in rows]

    async def count_orders(
        self, *, status: str | None = None, since: datetime | None = None
    ) -> int:
        """How many orders :meth:`orders` pages through with these filters."""
        found = await self.db.pool.fetchval(
            f"SELECT count(*) FROM {self.schema}.saga_status WHERE {_STATUS_SINCE}", status, since
        )
        return int(found)

    async def order_page(
        self,
        where: OrderFilter,
        *,
        cursor: Cursor | None = None,
        direction: Literal["older", "newer"] = "older",
        limit: int = 25,
    ) -> list[dict[str, Any]]:
        """A page of the orders ``where`` keeps, newest first, by keyset: the ``limit`` rows
        just older than ``cursor`` (or just newer, with ``direction="newer"``); the newest
        without one. No OFFSET: a deep page costs what the first does."""
        # Without a cursor $6 and $7 are NULL (and $6 must still appear, typed).
        keyset, order = "$6::timestamptz IS NULL", ORDER_LIST_KEY
        if cursor is not None:
            keyset = _OLDER if direction == "older" else _NEWER
            if direction == "newer":
                order = f"saga_type, {STARTED} ASC, saga_key DESC"
        rows = await self.db.pool.fetch(
            f"SELECT * FROM {self.schema}.saga_status"
            f" WHERE {ORDER_FILTER_SQL} AND ($7::text IS NULL OR {keyset})"
            f" ORDER BY {order} LIMIT $8",
            *where.params(),
            cursor[0] if cursor else None,
            cursor[1] if cursor else None,
            limit,
        )
        views = [_order(r) for r in rows]
        return views[::-1] if cursor is not None and direction == "newer" else views

    async def count_by_status(self, where: OrderFilter) -> dict[str, int]:
        """How many orders ``where`` keeps in each status (its own status ignored)."""
        rows = await self.db.pool.fetch(
            f"SELECT {STAGE} AS status, count(*) AS n FROM {self.schema}.saga_status"
            f" WHERE {ORDER_FILTER_SQL} GROUP BY 1",
            None,
            *where.params()[1:],
        )
        return {r["status"]: int(r["n"]) for r in rows}

    async def history(self, order_id: str) -> list[dict[str, Any]]:
        """The audit trail: every event of the order, in log order, summarized without PII."""
        rows = await self.db.pool.fetch(
            f"SELECT event_id::text, event_type, occurred_at, producer, summary, topic,"
            f' partition, "offset", causation_id FROM {self.schema}.event_log'
            ' WHERE order_id = $1 ORDER BY occurred_at, topic, partition, "offset"',
            order_id,
        )
        return [
            {
                "event_id": r["event_id"],
                "event_type": r["event_type"],
                "occurred_at": r["occurred_at"].isoformat(),
                "producer": r["producer"],
                "summary": r["summary"],
                "caused_by": r["causation_id"],
                "position": f"{r['topic']}/{r['partition']}@{r['offset']}",
            }
            for r in rows
        ]

    async def summary(self, *, window_minutes: int = 10) -> dict[str, Any]:
        """Counts per status and cancel reason, step durations (p50/p95, ms) of the latest
        :data:`~projections.stats_sql.STEP_SAMPLE` orders, orders/minute."""
        s = self.schema
        async with self.db.pool.acquire() as conn:
            by_status = await conn.fetch(
                f"SELECT {STAGE} AS status, count(*) AS n FROM {s}.saga_status"
                f" WHERE {ORDERS} GROUP BY 1 ORDER BY 1"
            )
            by_reason = await conn.fetch(
                f"SELECT reason, count(*) AS n FROM {s}.saga_status"
                f" WHERE {ORDERS} AND reason IS NOT NULL GROUP BY 1 ORDER BY 1"
            )
            steps = await conn.fetch(
                stats_sql.step_durations(
                    f"SELECT timeline FROM {s}.saga_status"
                    f" WHERE {ORDERS} ORDER BY {ORDER_LIST_KEY} LIMIT $1"
                ),
                stats_sql.STEP_SAMPLE,
            )
            recent = await conn.fetchval(
                f"SELECT count(*) FROM {s}.saga_status"
                f" WHERE {ORDERS} AND {STARTED} >= now() - make_interval(mins => $1)",
                window_minutes,
            )
        return {
            "orders": sum(r["n"] for r in by_status),
            "by_status": {r["status"]: r["n"] for r in by_status},
            "by_cancel_reason": {r["reason"]: r["n"] for r in by_reason},
            "step_duration_ms": stats_sql.step_stats(steps),
            "orders_per_minute": round(int(recent) / window_minutes, 2),
        }

    async def projection_status(self) -> dict[str, Any]:
        """How far the projector is: lag per partition, last event time, events/s (1 min)."""
        from aiokafka import AIOKafkaConsumer

        async with self.db.pool.acquire() as conn:
            offsets = await store.load_offsets(conn, self.schema)
            last = await conn.fetchval(f"SELECT max(occurred_at) FROM {self.schema}.event_log")
            total = await conn.fetchval(f"SELECT count(*) FROM {self.schema}.event_log")
            recent = await conn.fetchval(
                f"SELECT count(*) FROM {self.schema}.event_log"
                " WHERE logged_at >= now() - interval '60 seconds'"
            )
        consumer = AIOKafkaConsumer(**kafka_options(self.settings))
        await consumer.start()
        try:
            partitions = await partitions_of(self.settings, event_topics(self.settings))
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        lag = [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "end_offset": end,
                "projected": offsets.get((tp.topic, tp.partition), 0),
                "lag": end - offsets.get((tp.topic, tp.partition), 0),
            }
            for tp, end in sorted(ends.items(), key=lambda kv: (kv[0].topic, kv[0].partition))
        ]
        return {
            "projection": "saga_status (orders), order_history (event_log), summary",
            "events": int(total),
            "lag": lag,
            "total_lag": sum(p["lag"] for p in lag),
            "last_event_at": last.isoformat() if last else None,
            "events_per_second_1m": round(int(recent) / 60, 2),
        }
