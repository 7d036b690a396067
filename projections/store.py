"""The projector's tables: the append-only event log, the order read model, checkpoints.

Everything lives in the projector's schema (``<prefix>_projector``):

- ``event_log``: every event of every domain topic, once (unique by topic/partition/offset),
  with its envelope, payload (jsonb) and a PII-free summary. It is the audit trail
  (``order_history``) and the source of time travel.
- ``order_status``: one row per order, :func:`projections.model.fold_order` of its events.
- ``saga_status``: one row per saga of any type, written beside ``order_status`` from the same
  histories (:mod:`projections.sagas_store`).
- ``projector_offsets``: the next offset per partition, written in the same transaction as
  the rows above, so a restart resumes exactly where the last committed batch ended.

``summary`` is computed by queries over ``order_status`` (see :mod:`projections.queries`).
Rebuilds write ``*_rebuild`` shadow tables and swap them in (see :mod:`projections.rebuild`).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from events.database import Connection
from projections import sagas_store
from projections.history_cache import OrderHistoryCache
from projections.indexes import added_once
from projections.model import LoggedEvent, OrderView, StepView, fold_order

PROJECTOR_LOCK = zlib.crc32(b"choreo:projector")
"""Advisory lock held by each projector batch and by a rebuild's swap: they never interleave."""

EVENT_LOG_COLUMNS = (
    "topic", "partition", "offset", "event_id", "event_type", "order_id", "occurred_at",
    "producer", "schema_version", "correlation_id", "causation_id", "traceparent", "payload",
    "summary",
)  # fmt: skip
ORDER_STATUS_COLUMNS = (
    "order_id", "status", "cancel_reason", "current_step", "timeline", "steps_done",
    "steps_expected", "compensations_done", "trace_id", "customer_id", "total_minor",
    "currency", "placed_at", "updated_at", "event_count",
)  # fmt: skip


# Long: the tables' DDL as PostgreSQL reads it, in one statement per table.
def table_ddl(schema: str, suffix: str = "", *, indexes: bool = True) -> list[str]:
    """``event_log``, ``order_status`` and ``saga_status`` (or their ``suffix`` shadows),
    created once.

    Index names are left to PostgreSQL so that a shadow's indexes never clash with the live
    table's after a swap; hence the existence check instead of ``IF NOT EXISTS``. Without
    ``indexes`` the tables have no keys or indexes, for a bulk load that adds
    :func:`log_key_ddl`, :func:`status_key_ddl` and :func:`index_ddl` after (building an index
    once is cheaper than maintaining it row by row: a COPY into the keyed log took 1.6 times
    as long as into the bare one plus its keys; and a rebuild may load an order's row twice
    before the key).
    """
    log, status = f"{schema}.event_log{suffix}", f"{schema}.order_status{suffix}"
    log_indexes, status_indexes = index_ddl(schema, suffix) if indexes else ("", "")
    status_key = "PRIMARY KEY" if indexes else "NOT NULL"
    log_key = "PRIMARY KEY" if indexes else ""
    log_unique = ',\n                UNIQUE (topic, partition, "offset")' if indexes else ""
    return [
        f"""
        DO $$ BEGIN
        IF to_regclass('{log}') IS NULL THEN
            CREATE TABLE {log} (
                position       bigserial   {log_key},
                topic          text        NOT NULL,
                partition      int         NOT NULL,
                "offset"       bigint      NOT NULL,
                event_id       uuid        NOT NULL,
                event_type     text        NOT NULL,
                order_id       text        NOT NULL,
                occurred_at    timestamptz NOT NULL,
                producer       text        NOT NULL,
                schema_version int         NOT NULL,
                correlation_id text        NOT NULL,
                causation_id   text,
                traceparent    text,
                payload        jsonb       NOT NULL,
                summary        text        NOT NULL,
                logged_at      timestamptz NOT NULL DEFAULT now(){log_unique}
            );
            {log_indexes}
        END IF;
        IF to_regclass('{status}') IS NULL THEN
            CREATE TABLE {status} (
                order_id           text        {status_key},
                status             text        NOT NULL,
                cancel_reason      text,
                current_step       text,
                timeline           jsonb       NOT NULL,
                steps_done         int         NOT NULL,
                steps_expected     int         NOT NULL,
                compensations_done text[]      NOT NULL,
                trace_id           text,
                customer_id        text,
                total_minor        bigint,
                currency           text,
                placed_at          timestamptz,
                updated_at         timestamptz,
                event_count        int         NOT NULL
            );
            {status_indexes}
        END IF;
        END $$;
        """,
        *sagas_store.table_ddl(schema, suffix, indexes=indexes),
    ]


PLACED = "coalesce(placed_at, '-infinity'::timestamptz)"
"""When an order was placed, for sorting: not placed yet (``NULL``) sorts as the oldest."""
ORDER_LIST_KEY = f"{PLACED} DESC, order_id"
"""The orders list's sort (newest placed first; keyset paging walks it), which an index
serves: at 100,000 orders a page sorted without it took 0.25 s, a page half-way down by its
keyset 0.06 s; with it, under a millisecond each. (``placed_at DESC NULLS LAST`` sorts the
same, but a keyset bound on it has to admit ``OR placed_at IS NULL``, which no index scan can
start from.)"""


def index_ddl(schema: str, suffix: str = "") -> tuple[str, str]:
    """The secondary indexes of ``event_log`` and of ``order_status`` (or their shadows)."""
    log, status = f"{schema}.event_log{suffix}", f"{schema}.order_status{suffix}"
    return (
        f"CREATE INDEX ON {log} (order_id, occurred_at); CREATE INDEX ON {log} (logged_at);",
        f"CREATE INDEX ON {status} (status); CREATE INDEX ON {status} ({ORDER_LIST_KEY});",
    )


def list_index_ddl(schema: str) -> str:
    """The orders list's index on a live ``order_status`` created before it existed."""
    return added_once(
        schema, "order_status", ORDER_LIST_KEY, "%(COALESCE(placed_at, %) DESC, order_id)"
    )


def status_key_ddl(schema: str, suffix: str = "") -> str:
    """The primary key of an ``order_status`` created without indexes."""
    return f"ALTER TABLE {schema}.order_status{suffix} ADD PRIMARY KEY (order_id)"


def log_key_ddl(schema: str, suffix: str = "") -> str:
    """The keys of an ``event_log`` created without indexes (the unique key still refuses a
    record logged twice, when it is built)."""
    return (
        f"ALTER TABLE {schema}.event_log{suffix} ADD PRIMARY KEY (position),"
        ' ADD UNIQUE (topic, partition, "offset")'
    )


STRAY_ORDER_ROWS = (
    "DELETE FROM {schema}.order_status AS o USING {schema}.saga_status AS s"
    f" WHERE s.saga_key = o.order_id AND s.saga_type <> '{sagas_store.ORDER_SAGA}'"
)
"""Order rows of sagas of another type, which projectors before :func:`drop_status` kept
(see there): gone at the next start, so the orders list no longer shows them."""


def ddl() -> list[str]:
    """The live tables and the checkpoint table (``{schema}`` placeholder for migrate)."""
    return [
        *table_ddl("{schema}"),
        list_index_ddl("{schema}"),
        *sagas_store.list_index_ddl("{schema}"),
        STRAY_ORDER_ROWS,
        """
        CREATE TABLE IF NOT EXISTS {schema}.projector_offsets (
            topic       text   NOT NULL,
            partition   int    NOT NULL,
            next_offset bigint NOT NULL,
            PRIMARY KEY (topic, partition)
        )
        """,
    ]


class LogRow(NamedTuple):
    """One event_log row, in :data:`EVENT_LOG_COLUMNS` order: a named tuple, so the row is
    its own COPY record (and immutable, built in a third of a frozen dataclass's time)."""

    topic: str
    partition: int
    offset: int
    event_id: Any
    event_type: str
    order_id: str
    occurred_at: datetime
    producer: str
    schema_version: int
    correlation_id: str
    causation_id: str | None
    traceparent: str | None
    payload: str
    summary: str

    def as_tuple(self) -> tuple[Any, ...]:
        return self

    def logged(self, payload: dict[str, Any] | None = None) -> LoggedEvent:
        """The row as the fold reads it; ``payload``: the payload as a dict, when the caller
        has it already (else it is parsed back from the row)."""
        return LoggedEvent(
            str(self.event_id),
            self.event_type,
            self.order_id,
            self.occurred_at,
            self.producer,
            orjson.loads(self.payload) if payload is None else payload,
            self.traceparent,
        )


def payload_json(payload: dict[str, Any]) -> str:
    """The payload as stored: one serializer for the live and the rebuild path alike."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()


async def insert_log_rows(
    conn: Connection, schema: str, rows: Sequence[LogRow], suffix: str = ""
) -> None:
    """Append rows. Strict: logging a record twice violates the table's unique key, so an
    exactly-once bug fails loudly instead of being absorbed."""
    if not rows:
        return
    columns = list(zip(*(r.as_tuple() for r in rows), strict=True))
    await conn.execute(
        f"""
        INSERT INTO {schema}.event_log{suffix}
            (topic, partition, "offset", event_id, event_type, order_id, occurred_at, producer,
             schema_version, correlation_id, causation_id, traceparent, payload, summary)
        SELECT t, p, o, e, et, oi, oa, pr, sv, ci, ca, tp, pl::jsonb, su FROM unnest(
            $1::text[], $2::int[], $3::bigint[], $4::uuid[], $5::text[], $6::text[],
            $7::timestamptz[], $8::text[], $9::int[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::text[])
            AS u(t, p, o, e, et, oi, oa, pr, sv, ci, ca, tp, pl, su)
        """,
        *[list(c) for c in columns],
    )


async def load_events(
    conn: Connection,
    schema: str,
    order_ids: Iterable[str],
    *,
    suffix: str = "",
    as_of: datetime | None = None,
) -> dict[str, list[LoggedEvent]]:
    """The logged events of ``order_ids`` (up to ``as_of``), grouped by order."""
    rows = await conn.fetch(
        f"SELECT event_id::text, event_type, order_id, occurred_at, producer, payload::text,"
        f" traceparent FROM {schema}.event_log{suffix}"
        " WHERE order_id = ANY($1::text[]) AND ($2::timestamptz IS NULL OR occurred_at <= $2)",
        list(order_ids),
        as_of,
    )
    grouped: dict[str, list[LoggedEvent]] = defaultdict(list)
    for r in rows:
        grouped[r["order_id"]].append(
            LoggedEvent(
                r["event_id"],
                r["event_type"],
                r["order_id"],
                r["occurred_at"],
                r["producer"],
                orjson.loads(r["payload"]),
                r["traceparent"],
            )
        )
    return grouped


def status_tuple(view: OrderView) -> tuple[Any, ...]:
    """An order_status row in :data:`ORDER_STATUS_COLUMNS` order (orjson writes the timeline's
    dataclasses as their ``to_json`` does, without building the dicts)."""
    return (
        view.order_id, view.status, view.cancel_reason, view.current_step,
        orjson.dumps(view.timeline).decode(), view.steps_done,
        view.steps_expected, view.compensations_done, view.trace_id, view.customer_id,
        view.total_minor, view.currency, view.placed_at, view.updated_at, view.event_count,
    )  # fmt: skip


async def upsert_status(
    conn: Connection, schema: str, views: Sequence[OrderView], suffix: str = ""
) -> None:
    """Write the rows of ``views``, replacing the orders' previous rows."""
    if not views:
        return
    columns = list(zip(*(status_tuple(v) for v in views), strict=True))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ORDER_STATUS_COLUMNS[1:])
    await conn.execute(
        f"""
        INSERT INTO {schema}.order_status{suffix} ({", ".join(ORDER_STATUS_COLUMNS)})
        SELECT oi, st, cr, cs, tl::jsonb, sd, se, string_to_array(cd, ','), ti, cu, tm, cy,
               pa, ua, ec
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                    $7::int[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[],
                    $13::timestamptz[], $14::timestamptz[], $15::int[])
             AS u(oi, st, cr, cs, tl, sd, se, cd, ti, cu, tm, cy, pa, ua, ec)
        ON CONFLICT (order_id) DO UPDATE SET {updates}
        """,
        *[
            list(c) if i != 7 else [",".join(v) for v in c]  # text[] of text[] via a join
            for i, c in enumerate(columns)
        ],
    )


async def refold(
    conn: Connection, schema: str, order_ids: Iterable[str], suffix: str = ""
) -> list[OrderView]:
    """Recompute and store the order_status and saga_status rows of ``order_ids`` from the
    event log."""
    ids = sorted(set(order_ids))
    events = await load_events(conn, schema, ids, suffix=suffix)
    others = sagas_store.not_orders(await sagas_store.refold(conn, schema, events, suffix))
    await drop_status(conn, schema, others, suffix)
    views = [fold_order(key, events.get(key, [])) for key in ids if key not in others]
    await upsert_status(conn, schema, views, suffix)
    return views


async def drop_status(conn: Connection, schema: str, keys: Iterable[str], suffix: str = "") -> None:
    """Delete the ``order_status`` rows of ``keys``, sagas of another type.

    Such a row was written while none of the key's events folded yet named its saga type
    (its start event projected after others of its events, from another topic): with no
    type known, a key's events are the order model's, as before the saga read models.
    """
    stale = sorted(keys)
    if stale:
        await conn.execute(
            f"DELETE FROM {schema}.order_status{suffix} WHERE order_id = ANY($1::text[])", stale
        )


async def save_offsets(conn: Connection, schema: str, offsets: dict[tuple[str, int], int]) -> None:
    """Move checkpoints forward (never back: a stale writer cannot rewind them)."""
    if not offsets:
        return
    topics, partitions, nexts = zip(*((t, p, o) for (t, p), o in offsets.items()), strict=True)
    await conn.execute(
        f"""
        INSERT INTO {schema}.projector_offsets (topic, partition, next_offset)
        SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
        ON CONFLICT (topic, partition)
        DO UPDATE SET next_offset = GREATEST(projector_offsets.next_offset, EXCLUDED.next_offset)
        """,
        list(topics),
        list(partitions),
        list(nexts),
    )


async def load_offsets(conn: Connection, schema: str) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(f"SELECT topic, partition, next_offset FROM {schema}.projector_offsets")
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def refold_cached(
    conn: Connection, schema: str, rows: Sequence[LogRow], cache: OrderHistoryCache
) -> list[OrderView]:
    """:func:`refold` for the orders of ``rows`` (just logged in this transaction), taking
    their earlier history from ``cache`` where it is complete."""
    new: dict[str, list[LoggedEvent]] = defaultdict(list)
    for row in rows:
        new[row.order_id].append(row.logged())
    ids = sorted(new)
    found = await conn.fetch(
        # A join on unnest plans as one index probe per key; `= ANY($1)` took a bitmap
        # heap scan that cost 30 times as much. A key's count is in its order_status row,
        # or (a saga of another type) its saga_status row.
        f"SELECT i.order_id, coalesce(o.event_count, s.event_count) AS event_count,"
        f" o.order_id IS NOT NULL AS order_row"
        f" FROM unnest($1::text[]) AS i(order_id)"
        f" LEFT JOIN {schema}.order_status AS o USING (order_id)"
        f" LEFT JOIN {schema}.saga_status AS s ON s.saga_key = i.order_id"
        f" WHERE o.order_id IS NOT NULL OR s.saga_key IS NOT NULL",
        ids,
    )
    counts: dict[str, int] = {r["order_id"]: r["event_count"] for r in found}
    histories: dict[str, list[LoggedEvent]] = {}
    unknown: list[str] = []
    for order_id in ids:
        # No row means no logged event: every key's events have a row in one of the two
        # tables, written in their transaction (an order_status row unless another saga type
        # claims the key, and then its saga_status row).
        count = counts.get(order_id, 0)
        known = [] if count == 0 else cache.history(order_id, count)
        if known is None:
            unknown.append(order_id)
        else:
            histories[order_id] = [*known, *new[order_id]]
    if unknown:  # read back from the log, which already holds this batch's rows
        histories.update(await load_events(conn, schema, unknown))
    others = sagas_store.not_orders(await sagas_store.refold(conn, schema, histories))
    await drop_status(conn, schema, others & {r["order_id"] for r in found if r["order_row"]})
    views = [fold_order(key, histories[key]) for key in ids if key not in others]
    await upsert_status(conn, schema, views)
    for order_id in ids:
        cache.stage(order_id, histories[order_id])
    return views


async def apply_batch(conn: Connection, schema: str, rows: Sequence[LogRow],
                      offsets: dict[tuple[str, int], int],
                      cache: OrderHistoryCache | None = None) -> list[OrderView]:  # fmt: skip
    """One projector batch, in the caller's transaction: log the events, refold the orders
    they touch (with ``cache``: see :class:`OrderHistoryCache`), move the checkpoints.

    Records below the stored checkpoint are already projected (a rebuild may have moved the
    checkpoint past this consumer's position) and are dropped here, under the lock.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", PROJECTOR_LOCK)
    done = await load_offsets(conn, schema)
    fresh = [r for r in rows if r.offset >= done.get((r.topic, r.partition), 0)]
    await insert_log_rows(conn, schema, fresh)
    if cache is None:
        views = await refold(conn, schema, {r.order_id for r in fresh})
    else:
        views = await refold_cached(conn, schema, fresh, cache)
    await save_offsets(conn, schema, offsets)
    return views


def view_from_row(row: Any) -> OrderView:
    """An order_status row back as an :class:`OrderView`."""
    timeline = [
        StepView(
            s["step"],
            s["outcome"],
            datetime.fromisoformat(s["started_at"]) if s["started_at"] else None,
            datetime.fromisoformat(s["finished_at"]) if s["finished_at"] else None,
            s["attempts"],
        )
        for s in orjson.loads(row["timeline"])
    ]
    return OrderView(
        order_id=row["order_id"],
        status=row["status"],
        cancel_reason=row["cancel_reason"],
        current_step=row["current_step"],
        timeline=timeline,
        steps_done=row["steps_done"],
        steps_expected=row["steps_expected"],
        compensations_done=list(row["compensations_done"]),
        trace_id=row["trace_id"],
        customer_id=row["customer_id"],
        total_minor=row["total_minor"],
        currency=row["currency"],
        placed_at=row["placed_at"],
        updated_at=row["updated_at"],
        event_count=row["event_count"],
    )
