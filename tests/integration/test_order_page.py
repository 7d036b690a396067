"""The orders list's keyset paging and filters on the real database: every order exactly
once, in the newest-first order, forwards and back, orders without a start time last, the
sagas of another type never."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from events.database import Database
from events.settings import Settings
from projections import PROJECTOR, sagas_store, store
from projections.queries import OrderFilter, Queries
from projections.sagas_model import CANCELLED, COMPLETED, SagaView

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
async def queries(settings: Settings) -> AsyncIterator[Queries]:
    """Read models with nine orders (three placed at one instant, two without a start time)
    and a return started at the newest order's instant, by the same customer."""
    schema = PROJECTOR.schema(settings)
    placed = {
        "ord-a": T,
        "ord-b": T - timedelta(minutes=1),
        "ord-c": T - timedelta(minutes=1),
        "ord-d": T - timedelta(minutes=1),
        "ord-e": T - timedelta(minutes=2),
        "ord-f": T - timedelta(minutes=3),
        "ord-g": T - timedelta(minutes=4),
        "ord-x": None,
        "ord-y": None,
    }
    views = [
        SagaView(
            "order",
            order_id,
            1,
            status=CANCELLED if order_id in {"ord-c", "ord-f"} else COMPLETED,
            reason="shipment_failed" if order_id in {"ord-c", "ord-f"} else None,
            attributes={"customer_id": "cust-vip" if order_id == "ord-e" else "cust-1"},
            started_at=at,
        )
        for order_id, at in placed.items()
    ]
    views.append(
        SagaView("return", "ord-z-return", 1, started_at=T, attributes={"customer_id": "cust-vip"})
    )
    async with Database(settings) as db:
        await db.pool.execute(f"CREATE SCHEMA {schema}")
        try:
            async with db.pool.acquire() as conn:
                for ddl in store.table_ddl(schema):
                    await conn.execute(ddl)
                await sagas_store.upsert(conn, schema, views)
            yield Queries(db, settings)
        finally:
            await db.pool.execute(f"DROP SCHEMA {schema} CASCADE")


NEWEST_FIRST = ["ord-a", "ord-b", "ord-c", "ord-d", "ord-e", "ord-f", "ord-g", "ord-x", "ord-y"]


def _ids(rows: list[dict[str, object]]) -> list[str]:
    return [str(r["order_id"]) for r in rows]


def _cursor(row: dict[str, object]) -> tuple[datetime | None, str]:
    at = row["placed_at"]
    return (datetime.fromisoformat(str(at)) if at else None, str(row["order_id"]))


async def test_keyset_pages_cover_every_order_once_forwards_and_back(queries: Queries):
    everything = OrderFilter()
    pages = [await queries.order_page(everything, limit=2)]
    while len(pages[-1]) == 2:
        pages.append(await queries.order_page(everything, cursor=_cursor(pages[-1][-1]), limit=2))
    assert [i for p in pages for i in _ids(p)] == NEWEST_FIRST
    # Back from the last page: each "newer" page is the page before it.
    for before, expected in zip(pages[:0:-1], pages[-2::-1], strict=True):
        newer = await queries.order_page(
            everything, cursor=_cursor(before[0]), direction="newer", limit=2
        )
        assert _ids(newer) == _ids(expected)


async def test_filters_combine_and_count_by_status(queries: Queries):
    failed = OrderFilter(reason="shipment_failed")
    assert _ids(await queries.order_page(failed)) == ["ord-c", "ord-f"]
    assert await queries.count_by_status(failed) == {"cancelled": 2}
    window = OrderFilter(since=T - timedelta(minutes=2), until=T)
    assert _ids(await queries.order_page(window)) == ["ord-b", "ord-c", "ord-d", "ord-e"]
    assert _ids(await queries.order_page(OrderFilter(search="cust-vip"))) == ["ord-e"]
    assert _ids(await queries.order_page(OrderFilter(search="d-x"))) == ["ord-x"]
    completed = OrderFilter(status="completed", search="ord-")
    assert len(await queries.order_page(completed)) == 7
    # The status's own filter is left out of the counts (the chips show every status).
    assert await queries.count_by_status(completed) == {"completed": 7, "cancelled": 2}
