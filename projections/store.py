"""The projector's tables: the append-only event log, the saga read model, checkpoints.

Everything lives in the projector's schema (``<prefix>_projector``):

- ``event_log``: every event of every domain topic, once (unique by topic/partition/offset),
  with its envelope, payload (jsonb) and a PII-free summary. It is the audit trail
  (``order_history``) and the source of time travel.
- ``saga_status``: one row per saga of any type, folded from its events
  (:mod:`projections.sagas_store`); the orders API reads the order saga's rows.
- ``projector_offsets``: the next offset per partition, written in the same transaction as
  the rows above, so a restart resumes exactly where the last committed batch ended.

``summary`` is computed by queries over ``saga_status`` (see :mod:`projections.queries`).
Rebuilds write ``*_rebuild`` shadow tables and swap them in (see :mod:`projections.rebuild`).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import orjson

from events.database import Connection
from projections import sagas_store
from projections.history_cache import OrderHistoryCache
from projections.model import LoggedEvent
from projections.sagas_model import SagaView

PROJECTOR_LOCK = zlib.crc32(b"choreo:projector")
"""Advisory lock held by each projector batch and by a rebuild's swap: they never interleave."""

EVENT_LOG_COLUMNS = (
    "topic", "partition", "offset", "event_id", "event_type", "order_id", "occurred_at",
    "producer", "schema_version", "correlation_id", "causation_id", "traceparent", "payload",
    "summary",
)  # fmt: skip


def table_ddl(schema: str, suffix: str = "", *, indexes: bool = True) -> list[str]:
    """``event_log`` and ``saga_status`` (or their ``suffix`` shadows), created once.

    Index names are left to PostgreSQL so that a shadow's indexes never clash with the live
    table's after a swap; hence the existence check instead of ``IF NOT EXISTS``. Without
    ``indexes`` the tables have no keys or indexes, for a bulk load that adds
    :func:`log_key_ddl` and :func:`index_ddl` after (building an index once is cheaper than
    maintaining it row by row: a COPY into the keyed log took 1.6 times as long as into the
    bare one plus its keys; and a rebuild may load a saga's row twice before the key).
    """
    log = f"{schema}.event_log{suffix}"
    log_indexes = index_ddl(schema, suffix) if indexes else ""
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
        END $$;
        """,
        *sagas_store.table_ddl(schema, suffix, indexes=indexes),
    ]


def index_ddl(schema: str, suffix: str = "") -> str:
    """The secondary indexes of ``event_log`` (or its shadow)."""
    log = f"{schema}.event_log{suffix}"
    return f"CREATE INDEX ON {log} (order_id, occurred_at); CREATE INDEX ON {log} (logged_at);"


def log_key_ddl(schema: str, suffix: str = "") -> str:
    """The keys of an ``event_log`` created without indexes (the unique key still refuses a
    record logged twice, when it is built)."""
    return (
        f"ALTER TABLE {schema}.event_log{suffix} ADD PRIMARY KEY (position),"
        ' ADD UNIQUE (topic, partition, "offset")'
    )


ORDER_ROWS_MOVED = """
    DO $$ BEGIN
    IF to_regclass('{schema}.order_status') IS NOT NULL THEN
        UPDATE {schema}.saga_status AS s
        SET trace_id = o.trace_id, attributes = jsonb_build_object(
            'customer_id', o.customer_id, 'total_minor', o.total_minor, 'currency', o.currency)
        FROM {schema}.order_status AS o
        WHERE s.saga_key = o.order_id AND s.saga_type = 'order'
          AND s.attributes = jsonb_build_object();
        DROP TABLE {schema}.order_status;
    END IF;
    END $$;
"""
"""The order read model's table of projectors before the orders API read ``saga_status``:
what only it held of each order (its trace, customer and total, which ``saga_status`` rows
written before those columns lack) moved to the order saga's rows, then dropped. A rebuild
gives the same from the log."""


def ddl() -> list[str]:
    """The live tables and the checkpoint table (``{schema}`` placeholder for migrate)."""
    return [
        *table_ddl("{schema}"),
        *sagas_store.list_index_ddl("{schema}"),
        sagas_store.columns_ddl("{schema}"),
        ORDER_ROWS_MOVED,
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


async def refold(
    conn: Connection, schema: str, keys: Iterable[str], suffix: str = ""
) -> list[SagaView]:
    """Recompute and store the saga_status rows of ``keys`` from the event log."""
    events = await load_events(conn, schema, sorted(set(keys)), suffix=suffix)
    return await sagas_store.refold(conn, schema, events, suffix)


async def backfill(conn: Connection, schema: str, batch: int = 1000) -> int:
    """Fold again from the log the saga rows an upgrade queued (written before their table had
    each saga's trace and start captures: :func:`sagas_store.columns_ddl`), a batch a
    transaction under the projector's lock, each batch leaving the queue with its commit (a
    restart goes on where this stopped); the queue is dropped once empty. Returns how many
    rows were folded."""
    queue = f"{schema}.{sagas_store.BACKFILL}"
    folded = 0
    while await conn.fetchval("SELECT to_regclass($1)", queue) is not None:
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", PROJECTOR_LOCK)
                keys = await conn.fetch(
                    f"DELETE FROM {queue} WHERE saga_key IN"
                    f" (SELECT saga_key FROM {queue} ORDER BY saga_key LIMIT {batch})"
                    " RETURNING saga_key"
                )
                if keys:
                    folded += len(await refold(conn, schema, [k["saga_key"] for k in keys]))
                else:
                    await conn.execute(f"DROP TABLE {queue}")
        except asyncpg.UndefinedTableError as exc:
            # Another projector starting beside this one emptied and dropped the queue while
            # this one waited for the lock (a check before the DELETE would read the catalog
            # as it was when the wait began).
            if sagas_store.BACKFILL not in str(exc):
                raise
            break
    return folded


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
) -> list[SagaView]:
    """:func:`refold` for the sagas of ``rows`` (just logged in this transaction), taking
    their earlier history from ``cache`` where it is complete."""
    new: dict[str, list[LoggedEvent]] = defaultdict(list)
    for row in rows:
        new[row.order_id].append(row.logged())
    ids = sorted(new)
    found = await conn.fetch(
        # A join on unnest plans as one index probe per key; `= ANY($1)` took a bitmap
        # heap scan that cost 30 times as much.
        f"SELECT i.order_id, s.event_count FROM unnest($1::text[]) AS i(order_id)"
        f" JOIN {schema}.saga_status AS s ON s.saga_key = i.order_id",
        ids,
    )
    counts: dict[str, int] = {r["order_id"]: r["event_count"] for r in found}
    histories: dict[str, list[LoggedEvent]] = {}
    unknown: list[str] = []
    for order_id in ids:
        # A key without a row has logged events of no saga yet (its start event not projected)
        # or none before this batch: only the log tells which.
        count = counts.get(order_id)
        known = None if count is None else cache.history(order_id, count)
        if known is None:
            unknown.append(order_id)
        else:
            histories[order_id] = [*known, *new[order_id]]
    if unknown:  # read back from the log, which already holds this batch's rows
        histories.update(await load_events(conn, schema, unknown))
    views = await sagas_store.refold(conn, schema, histories)
    for order_id in ids:
        cache.stage(order_id, histories[order_id])
    return views


async def apply_batch(conn: Connection, schema: str, rows: Sequence[LogRow],
                      offsets: dict[tuple[str, int], int],
                      cache: OrderHistoryCache | None = None) -> list[SagaView]:  # fmt: skip
    """One projector batch, in the caller's transaction: log the events, refold the sagas
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
