"""The orders list is one type's list of the saga read model: a keyset page deep in it starts
from the type's list index (:data:`projections.sagas_store.TYPE_LIST_KEY`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.database import Database
from events.settings import Settings
from projections import PROJECTOR, store
from projections.queries import ORDER_LIST_KEY, ORDERS, OrderFilter, Queries
from projections.sagas_store import STARTED
from tests.integration.test_api import drop_schema

pytestmark = pytest.mark.integration


async def test_a_deep_keyset_page_of_orders_starts_from_the_list_index(settings: Settings):
    schema = PROJECTOR.schema(settings)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            t0 = datetime(2026, 1, 1, tzinfo=UTC)
            await db.pool.execute(
                f"INSERT INTO {schema}.saga_status (saga_type, saga_key, version, status,"
                " current_steps, steps_done, steps_expected, started_at, timeline,"
                " compensations, event_count, attributes)"
                " SELECT CASE WHEN n % 4 = 0 THEN 'return' ELSE 'order' END,"
                " 'ord-' || lpad(n::text, 5, '0'), 1, 'completed', '{}', 5, 5,"
                " $1::timestamptz + n * interval '1 second', '[]', '[]', 8, '{}'"
                " FROM generate_series(1, 2000) n",
                t0,
            )
            await db.pool.execute(f"ANALYZE {schema}.saga_status")
            queries = Queries(db, settings)
            cursor = (t0 + timedelta(seconds=1000), "ord-01000")
            page = await queries.order_page(OrderFilter(), cursor=cursor, limit=4)
            # ord-00996 is a return: not an order.
            assert [o["order_id"] for o in page] == [
                "ord-00999", "ord-00998", "ord-00997", "ord-00995"
            ]  # fmt: skip
            newer = await queries.order_page(
                OrderFilter(), cursor=cursor, direction="newer", limit=2
            )
            assert [o["order_id"] for o in newer] == ["ord-01002", "ord-01001"]
            async with db.pool.acquire() as conn:
                await conn.execute("SET enable_seqscan = off")  # the plan, not the table's size
                rows = await conn.fetch(
                    f"EXPLAIN SELECT saga_key FROM {schema}.saga_status"
                    f" WHERE {ORDERS} AND {STARTED} <= $1 ORDER BY {ORDER_LIST_KEY} LIMIT 25",
                    cursor[0],
                )
            plan = "\n".join(r[0] for r in rows)
            # The cursor's bound starts the index scan (it is not a filter over every row).
            assert "Index Cond" in plan, plan
            assert "started_at" in plan.split("Index Cond", 1)[1], plan
    finally:
        await drop_schema(settings)
