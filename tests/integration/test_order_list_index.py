"""The orders list's index: created with the tables, added once to a live ``order_status``
made before it existed, and the index a keyset page deep in the list starts from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.database import Database
from events.settings import Settings
from projections import PROJECTOR, store
from projections.queries import OrderFilter, Queries
from tests.integration.test_api import drop_schema

pytestmark = pytest.mark.integration

LIST_INDEXES = """
    SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'order_status'
    AND indexdef LIKE '%(COALESCE(placed_at, %) DESC, order_id)'
"""


async def test_the_list_index_is_added_once_and_serves_a_deep_keyset_page(settings: Settings):
    schema = PROJECTOR.schema(settings)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            assert await db.pool.fetchval(LIST_INDEXES, schema) == 1
            # A table from before the index: the next start adds it, and only once.
            await db.pool.execute(
                f"DROP INDEX {schema}."
                + await db.pool.fetchval(LIST_INDEXES.replace("count(*)", "indexname"), schema)
            )
            await db.migrate(schema, *store.ddl())
            await db.migrate(schema, *store.ddl())
            assert await db.pool.fetchval(LIST_INDEXES, schema) == 1

            t0 = datetime(2026, 1, 1, tzinfo=UTC)
            await db.pool.execute(
                f"INSERT INTO {schema}.order_status (order_id, status, timeline, steps_done,"
                " steps_expected, compensations_done, placed_at, event_count)"
                " SELECT 'ord-' || lpad(n::text, 5, '0'), 'completed', '[]', 5, 5, '{}',"
                " $1::timestamptz + n * interval '1 second', 8 FROM generate_series(1, 2000) n",
                t0,
            )
            await db.pool.execute(f"ANALYZE {schema}.order_status")
            queries = Queries(db, settings)
            cursor = (t0 + timedelta(seconds=1000), "ord-01000")
            page = await queries.order_page(OrderFilter(), cursor=cursor, limit=3)
            assert [o["order_id"] for o in page] == ["ord-00999", "ord-00998", "ord-00997"]
            newer = await queries.order_page(
                OrderFilter(), cursor=cursor, direction="newer", limit=2
            )
            assert [o["order_id"] for o in newer] == ["ord-01002", "ord-01001"]
            async with db.pool.acquire() as conn:
                await conn.execute("SET enable_seqscan = off")  # the plan, not the table's size
                rows = await conn.fetch(
                    f"EXPLAIN SELECT order_id FROM {schema}.order_status"
                    f" WHERE {store.PLACED} <= $1 ORDER BY {store.ORDER_LIST_KEY} LIMIT 25",
                    cursor[0],
                )
            plan = "\n".join(r[0] for r in rows)
            # The cursor's bound starts the index scan (it is not a filter over every row).
            assert "Index Cond" in plan, plan
    finally:
        await drop_schema(settings)
