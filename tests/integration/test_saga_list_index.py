"""The list indexes of ``saga_status`` (one type's, every type's): created with the tables,
added once to a live table made before they existed, and what a keyset page starts from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.database import Database
from events.settings import Settings
from projections import PROJECTOR, sagas_activity, sagas_queries, sagas_store, store
from projections.queries import Queries
from tests.integration.test_api import drop_schema

pytestmark = pytest.mark.integration

TYPE_INDEXES = """
    SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'saga_status'
    AND indexdef LIKE '%(saga_type, COALESCE(started_at, %) DESC, saga_key)'
"""
ALL_INDEXES = TYPE_INDEXES.replace("%(saga_type, COALESCE", "%(COALESCE")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_the_type_index_is_added_once_and_serves_a_rare_types_page(settings: Settings):
    schema = PROJECTOR.schema(settings)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            for indexes in (TYPE_INDEXES, ALL_INDEXES):
                assert await db.pool.fetchval(indexes, schema) == 1
            # A table from before the indexes: the next start adds them, and only once.
            for indexes in (TYPE_INDEXES, ALL_INDEXES):
                name = await db.pool.fetchval(indexes.replace("count(*)", "indexname"), schema)
                await db.pool.execute(f"DROP INDEX {schema}.{name}")
            await db.migrate(schema, *store.ddl())
            await db.migrate(schema, *store.ddl())
            for indexes in (TYPE_INDEXES, ALL_INDEXES):
                assert await db.pool.fetchval(indexes, schema) == 1

            await db.pool.execute(
                f"INSERT INTO {schema}.saga_status (saga_type, saga_key, version, status,"
                " current_steps, steps_done, steps_expected, started_at, timeline,"
                " compensations, event_count)"
                " SELECT CASE WHEN n % 200 = 0 THEN 'return' ELSE 'order' END,"
                " 'k-' || lpad(n::text, 5, '0'), 1, 'completed', '{}', 4, 4,"
                " $1::timestamptz + n * interval '1 second', '[]', '[]', 8"
                " FROM generate_series(1, 4000) n",
                T0,
            )
            await db.pool.execute(f"ANALYZE {schema}.saga_status")
            queries = Queries(db, settings)
            newest = await sagas_queries.saga_page(queries, "return", limit=3)
            assert [s["saga_key"] for s in newest] == ["k-04000", "k-03800", "k-03600"]
            cursor = (T0 + timedelta(seconds=3600), "k-03600")
            page = await sagas_queries.saga_page(queries, "return", cursor=cursor, limit=2)
            assert [s["saga_key"] for s in page] == ["k-03400", "k-03200"]
            newer = await sagas_queries.saga_page(
                queries, "return", cursor=cursor, direction="newer", limit=5
            )
            assert [s["saga_key"] for s in newer] == ["k-04000", "k-03800"]
            async with db.pool.acquire() as conn:
                await conn.execute("SET enable_seqscan = off")  # the plan, not the table's size
                rows = await conn.fetch(
                    f"EXPLAIN SELECT saga_key FROM {schema}.saga_status"
                    f" WHERE saga_type = 'return' AND {sagas_store.STARTED} <= $1"
                    f" ORDER BY {sagas_store.TYPE_LIST_KEY} LIMIT 25",
                    cursor[0],
                )
                every = await conn.fetch(
                    f"EXPLAIN SELECT saga_key FROM {schema}.saga_status"
                    f" WHERE {sagas_store.STARTED} <= $1"
                    f" ORDER BY {sagas_store.LIST_KEY} LIMIT 25",
                    cursor[0],
                )
            plan = "\n".join(r[0] for r in rows)
            # The type and the cursor's bound start the index scan.
            assert "Index Cond: ((saga_type = 'return'::text) AND" in plan, plan
            # Every type's page: the cursor's bound starts the other index's scan, no sort.
            plan = "\n".join(r[0] for r in every)
            assert "Index Cond: (COALESCE(started_at" in plan, plan
            assert "Sort" not in plan, plan
    finally:
        await drop_schema(settings)


ENDED_INDEXES = """
    SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'saga_status'
    AND indexdef LIKE '%(saga_type, ended_at) WHERE (ended_at IS NOT NULL)'
"""


async def test_a_types_latency_per_minute_reads_the_ended_sagas_index(settings: Settings):
    schema = PROJECTOR.schema(settings)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            assert await db.pool.fetchval(ENDED_INDEXES, schema) == 1
            name = await db.pool.fetchval(ENDED_INDEXES.replace("count(*)", "indexname"), schema)
            await db.pool.execute(f"DROP INDEX {schema}.{name}")
            await db.migrate(schema, *store.ddl())  # a table from before it: added, once
            await db.migrate(schema, *store.ddl())
            assert await db.pool.fetchval(ENDED_INDEXES, schema) == 1

            # One saga ended in the middle of each minute before this one, 2 s after it began.
            minute = await db.pool.fetchval("SELECT date_trunc('minute', now())")
            await db.pool.execute(
                f"INSERT INTO {schema}.saga_status (saga_type, saga_key, version, status,"
                " current_steps, steps_done, steps_expected, started_at, ended_at, timeline,"
                " compensations, event_count)"
                " SELECT 'order', 'k-' || lpad(n::text, 5, '0'), 1, 'completed', '{}', 4, 4,"
                " $1::timestamptz - n * interval '1 minute' + interval '28 seconds',"
                " $1::timestamptz - n * interval '1 minute' + interval '30 seconds', '[]', '[]', 8"
                " FROM generate_series(1, 4000) n",
                minute,
            )
            await db.pool.execute(f"ANALYZE {schema}.saga_status")
            queries = Queries(db, settings)
            latency = await sagas_activity.latency_per_minute(queries, "order", minutes=30)
            # Each of the window's minutes before that one has its saga (a minute may have
            # begun since: the window then ends one minute later).
            counts = [m["n"] for m in latency]
            assert counts == [int(datetime.fromisoformat(m["minute"]) < minute) for m in latency]
            assert sum(counts) >= 28
            assert {m["p50"] for m in latency if m["n"]} == {2000.0}
            async with db.pool.acquire() as conn:
                await conn.execute("SET enable_seqscan = off")  # the plan, not the table's size
                plan = "\n".join(
                    r[0]
                    for r in await conn.fetch(
                        "EXPLAIN " + sagas_activity.ended_sql(schema), 30, "order", ["completed"]
                    )
                )
            assert "Index Cond: ((saga_type = 'order'::text) AND (ended_at >=" in plan, plan
    finally:
        await drop_schema(settings)
