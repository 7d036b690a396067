"""The ``saga_status`` table: one row per saga of any type.

Each row is :func:`projections.sagas_model.fold_saga` of the saga's logged events with the
definition the saga runs on. The projector writes it in the transaction that logs the events
(see :func:`projections.store.refold`), and a rebuild writes its shadow the same way, so live
rows and rebuilt rows agree.

Which saga a key belongs to is decided in one place, :func:`saga_of`: until the envelope
carries the saga type, the start event names it (the registry's type whose start event it is,
on its current version) and the key's row keeps it (type and version) for later events. A key
of no known saga (no start event seen, no row) has no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

import orjson

from events.database import Connection
from projections.indexes import added_once
from projections.model import RANK, LoggedEvent
from projections.sagas_model import RUNNING, SagaView, fold_saga
from sagas.definition import SagaDefinition
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

SAGA_STATUS_COLUMNS = (
    "saga_type", "saga_key", "version", "status", "milestone", "reason", "current_steps",
    "steps_done", "steps_expected", "started_at", "updated_at", "ended_at", "timeline",
    "compensations", "event_count", "trace_id", "attributes",
)  # fmt: skip
Known = Mapping[str, tuple[str, int]]
"""Saga key → (saga type, version) of its ``saga_status`` row."""


def table_ddl(schema: str, suffix: str = "", *, indexes: bool = True) -> list[str]:
    """``saga_status`` (or its ``suffix`` shadow), created once; without ``indexes`` its key
    and indexes come later (:func:`index_ddl`), as for ``event_log``."""
    table = f"{schema}.saga_status{suffix}"
    return [
        f"""
        DO $$ BEGIN
        IF to_regclass('{table}') IS NULL THEN
            CREATE TABLE {table} (
                saga_type      text        NOT NULL,
                saga_key       text        NOT NULL,
                version        int         NOT NULL,
                status         text        NOT NULL,
                milestone      text,
                reason         text,
                current_steps  text[]      NOT NULL,
                steps_done     int         NOT NULL,
                steps_expected int         NOT NULL,
                started_at     timestamptz,
                updated_at     timestamptz,
                ended_at       timestamptz,
                timeline       jsonb       NOT NULL,
                compensations  jsonb       NOT NULL,
                event_count    int         NOT NULL,
                trace_id       text,
                attributes     jsonb       NOT NULL DEFAULT jsonb_build_object()
            );
            {"".join(f"{statement};" for statement in index_ddl(schema, suffix)) if indexes else ""}
        END IF;
        END $$;
        """,
        compression_ddl(table),
        *([fillfactor_ddl(table)] if indexes else []),
    ]


FILLFACTOR = 70
"""How full PostgreSQL fills ``saga_status``'s pages on insert: the room left lets an update
put the row's new version on its page, a heap-only (HOT) update that writes none of the seven
indexes. Packed full, a row updated once per projector batch (6.7 times a saga in the saga
bench) moved pages in three of five updates, and each such update wrote every index
(``bench/HISTORY.md``). A rebuild loads its shadow packed (its sagas are mostly done) and sets
this before the swap, for the rows inserted after."""


def fillfactor_ddl(table: str) -> str:
    """``table`` filled to :data:`FILLFACTOR` by the inserts to come (pages already written
    keep their rows). Looked up first, like :func:`compression_ddl`: the ``ALTER TABLE`` locks
    the table, and every start runs this."""
    option = f"fillfactor={FILLFACTOR}"
    return f"""
        DO $$ BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM pg_class WHERE oid = to_regclass('{table}')
            AND reloptions @> ARRAY['{option}']
        ) THEN
            ALTER TABLE {table} SET ({option});
        END IF;
        END $$;
        """


def compression_ddl(table: str) -> str:
    """``table``'s timeline and compensations compressed with LZ4 rather than PostgreSQL's
    default pglz, where the server can (PostgreSQL 14 or later, built with LZ4).

    A saga's timeline is about 2 KB of JSON, so every row is over the size PostgreSQL
    compresses at and each update compresses it again: pglz took 12 to 14 µs of the server's
    55 µs an upserted row, LZ4 a fraction of that (``bench/HISTORY.md``). Values already
    stored keep pglz until rewritten; reads take either. Looked up first, like
    :func:`columns_ddl`: the ``ALTER TABLE`` locks the table, and every start runs this."""
    # Nested IFs: PL/pgSQL plans each condition when it first runs it, and `attcompression`
    # is not a column before PostgreSQL 14.
    return f"""
        DO $$ BEGIN
        IF current_setting('server_version_num')::int >= 140000 THEN
            IF EXISTS (
                SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('{table}')
                AND attname IN ('timeline', 'compensations') AND attcompression <> 'l'
            ) THEN
                ALTER TABLE {table} ALTER COLUMN timeline SET COMPRESSION lz4,
                    ALTER COLUMN compensations SET COMPRESSION lz4;
            END IF;
        END IF;
        EXCEPTION WHEN feature_not_supported THEN
            NULL;  -- a server built without LZ4: pglz stays
        END $$;
        """


def index_ddl(schema: str, suffix: str = "") -> list[str]:
    """The key and indexes of ``saga_status`` (or its shadow)."""
    table = f"{schema}.saga_status{suffix}"
    return [
        f"ALTER TABLE {table} ADD PRIMARY KEY (saga_type, saga_key)",
        f"CREATE INDEX ON {table} (saga_key)",
        f"CREATE INDEX ON {table} (status)",
        f"CREATE INDEX ON {table} (started_at)",
        f"CREATE INDEX ON {table} ({TYPE_LIST_KEY})",
        f"CREATE INDEX ON {table} ({LIST_KEY})",
        f"CREATE INDEX ON {table} ({ENDED_KEY}) WHERE {ENDED}",
    ]


STARTED = "coalesce(started_at, '-infinity'::timestamptz)"
"""When a saga started, for sorting: a row without a start time sorts as the oldest."""
STAGE = f"CASE WHEN status = '{RUNNING}' THEN coalesce(milestone, status) ELSE status END"
""":func:`projections.sagas_model.stage` of a row, in SQL (to filter and count by it)."""
TYPE_LIST_KEY = f"saga_type, {STARTED} DESC, saga_key"
"""The index of one type's list, newest first (the console's `/console/sagas/{type}`, keyset
paged): without it a rare type's page walked the whole table's start times."""


LIST_KEY = f"{STARTED} DESC, saga_key"
"""The index of every type's list, newest first (`GET /sagas`, `choreo sagas list` without a
type): without it each page sorted every saga's start time (64 ms warm at 100,000 sagas,
against 3 ms for one type's page from its index)."""


ENDED_KEY, ENDED = "saga_type, ended_at", "ended_at IS NOT NULL"
"""The index of one type's sagas by when they ended (ended ones only): a type's latency per
minute reads the sagas that ended in its window from it, not from a scan of the type's rows
(38 to 41 ms at 100,000 sagas of a type)."""


def list_index_ddl(schema: str) -> list[str]:
    """The list indexes (:data:`TYPE_LIST_KEY`, :data:`LIST_KEY`) and the ended sagas'
    (:data:`ENDED_KEY`) on a live ``saga_status`` created before they existed."""
    return [
        added_once(
            schema,
            "saga_status",
            ENDED_KEY,
            "%(saga_type, ended_at) WHERE (ended_at IS NOT NULL)",
            where=ENDED,
        ),
        added_once(
            schema,
            "saga_status",
            TYPE_LIST_KEY,
            "%(saga_type, COALESCE(started_at, %) DESC, saga_key)",
        ),
        added_once(schema, "saga_status", LIST_KEY, "%(COALESCE(started_at, %) DESC, saga_key)"),
    ]


BACKFILL = "saga_status_backfill"
"""The keys of the rows written before ``saga_status`` had the columns :func:`columns_ddl`
adds, queued to be folded again from the log (:func:`projections.store.backfill`)."""


def columns_ddl(schema: str) -> str:
    """The columns a live ``saga_status`` created before them lacks, and its rows' keys
    queued in :data:`BACKFILL` for their values. Looked up first: an ``ALTER TABLE`` locks
    the table against every reader even when it has nothing to add, and every process start
    runs this."""
    return f"""
        DO $$ BEGIN
        IF to_regclass('{schema}.saga_status') IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM information_schema.columns WHERE table_schema = '{schema}'
            AND table_name = 'saga_status' AND column_name = 'attributes'
        ) THEN
            ALTER TABLE {schema}.saga_status ADD COLUMN IF NOT EXISTS trace_id text,
                ADD COLUMN attributes jsonb NOT NULL DEFAULT jsonb_build_object();
            CREATE TABLE {schema}.{BACKFILL} (saga_key text PRIMARY KEY);
            INSERT INTO {schema}.{BACKFILL} SELECT DISTINCT saga_key FROM {schema}.saga_status;
        END IF;
        END $$;
        """


def saga_of(
    events: Sequence[LoggedEvent], known: tuple[str, int] | None, registry: SagaRegistry = SAGAS
) -> SagaDefinition | None:
    """The definition the saga of ``events`` (one key's) runs on: its row's (``known``), else
    the current one of the type whose start event is among them; ``None`` if neither.

    The one place that knows how a key maps to a saga type: when the envelope carries the
    type, this reads it from the events instead.
    """
    if known is not None:
        try:
            return registry.get(*known)
        except KeyError:
            return None  # a version this process does not know: its row stays as it was
    starts = _starts(registry)
    candidates = [e for e in events if e.event_type in starts]  # sort only these: usually one
    for event in sorted(candidates, key=RANK):
        d = starts[event.event_type]
        if d.start.where is None or d.start.matches(
            d.catalog[event.event_type].model_validate(event.payload)
        ):
            return d
    return None


@cache  # asked for every key of every batch; a registry is fixed once built
def _starts(registry: SagaRegistry) -> dict[str, SagaDefinition]:
    """Start event type → the current definition it starts; of two types that start on one
    event, the first by name, as :meth:`SagaRegistry.starting` (the coordinator) decides."""
    found: dict[str, SagaDefinition] = {}
    for saga_type in registry.types:
        d = registry.current(saga_type)
        found.setdefault(d.start.event_type, d)
    return found


def fold_all(
    histories: Mapping[str, Sequence[LoggedEvent]], known: Known, registry: SagaRegistry = SAGAS
) -> list[SagaView]:
    """The ``saga_status`` rows of the keys of ``histories`` (all of each key's events) that
    belong to a known saga."""
    views = []
    for key, events in sorted(histories.items()):
        d = saga_of(events, known.get(key), registry)
        if d is not None:
            views.append(fold_saga(d, key, events))
    return views


def row_tuple(view: SagaView) -> tuple[Any, ...]:
    """A saga_status row in :data:`SAGA_STATUS_COLUMNS` order (orjson writes the step and
    compensation dataclasses as their ``to_json`` does, without building the dicts)."""
    return (
        view.saga_type, view.saga_key, view.version, view.status, view.milestone, view.reason,
        view.current_steps, view.steps_done, view.steps_expected, view.started_at,
        view.updated_at, view.ended_at,
        orjson.dumps(view.steps).decode(), orjson.dumps(view.compensations).decode(),
        view.event_count, view.trace_id, orjson.dumps(view.attributes).decode(),
    )  # fmt: skip


async def copy_rows(
    conn: Connection, schema: str, histories: Mapping[str, Sequence[LoggedEvent]], suffix: str
) -> list[SagaView]:
    """COPY the rows of the sagas of ``histories`` into a table that has none of them yet (a
    rebuild's shadow): their type comes from their start events. Returns them."""
    views = fold_all(histories, {})
    await conn.copy_records_to_table(
        f"saga_status{suffix}",
        schema_name=schema,
        columns=SAGA_STATUS_COLUMNS,
        records=[row_tuple(v) for v in views],
    )
    return views


async def known(conn: Connection, schema: str, keys: Iterable[str], suffix: str = "") -> Known:
    """The saga type and version of the rows of ``keys``."""
    rows = await conn.fetch(
        f"SELECT s.saga_key, s.saga_type, s.version FROM unnest($1::text[]) AS i(saga_key)"
        f" JOIN {schema}.saga_status{suffix} AS s USING (saga_key)",
        list(keys),
    )
    return {r["saga_key"]: (r["saga_type"], r["version"]) for r in rows}


async def upsert(
    conn: Connection, schema: str, views: Sequence[SagaView], suffix: str = ""
) -> None:
    """Write the rows of ``views``, replacing the sagas' previous rows."""
    if not views:
        return
    columns = [list(c) for c in zip(*(row_tuple(v) for v in views), strict=True)]
    columns[6] = [orjson.dumps(steps).decode() for steps in columns[6]]  # text[] as json text
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in SAGA_STATUS_COLUMNS[2:])
    await conn.execute(
        f"""
        INSERT INTO {schema}.saga_status{suffix} ({", ".join(SAGA_STATUS_COLUMNS)})
        SELECT ty, ke, ve, st, mi, re, ARRAY(SELECT jsonb_array_elements_text(cs::jsonb)),
               sd, se, sa, ua, ea, tl::jsonb, co::jsonb, ec, ti, at::jsonb
        FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::int[], $9::int[], $10::timestamptz[], $11::timestamptz[],
                    $12::timestamptz[], $13::text[], $14::text[], $15::int[], $16::text[],
                    $17::text[])
             AS u(ty, ke, ve, st, mi, re, cs, sd, se, sa, ua, ea, tl, co, ec, ti, at)
        ON CONFLICT (saga_type, saga_key) DO UPDATE SET {updates}
        """,
        *columns,
    )


async def refold(
    conn: Connection,
    schema: str,
    histories: Mapping[str, Sequence[LoggedEvent]],
    suffix: str = "",
    registry: SagaRegistry = SAGAS,
) -> list[SagaView]:
    """Recompute and store the saga_status rows of the keys of ``histories`` (all of each
    key's logged events)."""
    views = fold_all(histories, await known(conn, schema, histories, suffix), registry)
    await upsert(conn, schema, views, suffix)
    return views


def row_json(row: Any) -> dict[str, Any]:
    """A saga_status row as :meth:`SagaView.to_json` shows it."""
    moments = {k: row[k].isoformat() if row[k] else None for k in TIMES}
    return {
        **{k: row[k] for k in ("saga_type", "saga_key", "version", "status", "milestone")},
        "reason": row["reason"],
        "current_steps": list(row["current_steps"]),
        "progress": {"done": row["steps_done"], "expected": row["steps_expected"]},
        **moments,
        "steps": orjson.loads(row["timeline"]),
        "compensations": orjson.loads(row["compensations"]),
        "event_count": row["event_count"],
        "trace_id": row["trace_id"],
        "attributes": orjson.loads(row["attributes"]),
    }


TIMES = ("started_at", "updated_at", "ended_at")
