"""One instant per delivery, and the replay's delivery: same transaction, nothing staged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.catalog import CATALOG, InventoryReserved, OrderPlaced
from contracts.parts import ReservedItem
from contracts.samples import sample_order_placed
from events.codec import Codec
from events.database import Connection, Database, schema_name
from events.delivery import TransactionalDelivery
from events.model import Event, Message, frozen_clock, utc_now
from events.outbox import outbox_size
from events.replay.delivery import ReplayDelivery
from events.router import Router
from events.settings import Settings

pytestmark = pytest.mark.integration

STATE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.seen (order_id text PRIMARY KEY, at timestamptz NOT NULL)
"""

router: Router[tuple[Connection, str]] = Router("replay-test", CATALOG)


@router.on(OrderPlaced)
async def reserve(message: Message[OrderPlaced], ctx: tuple[Connection, str]) -> list[Event]:
    conn, schema = ctx
    await conn.execute(f"INSERT INTO {schema}.seen VALUES ($1, $2)", message.saga_key, utc_now())
    item = ReservedItem(sku="SKU-RED-MUG", quantity=1)
    return [InventoryReserved(reservation_id="res-1", items=(item,), reserved_at=utc_now())]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        await database.migrate(schema_name(settings, "replay"), STATE_DDL)
        yield database
        await database.pool.execute(
            f"DROP SCHEMA IF EXISTS {schema_name(settings, 'replay')} CASCADE"
        )


def placed(order_id: str) -> Message[Event]:
    return Message.first(
        sample_order_placed(), saga_type="order", saga_key=order_id, producer="test"
    )


async def rows(db: Database, schema: str, table: str) -> list[dict[str, object]]:
    return [dict(r) for r in await db.pool.fetch(f"SELECT * FROM {schema}.{table} ORDER BY 1")]


async def test_a_delivery_happens_at_one_instant_a_replay_reproduces(
    settings: Settings, codec: Codec, db: Database
):
    schema = schema_name(settings, "replay")
    options: dict[str, Any] = {
        "db": db,
        "schema": schema,
        "context_factory": lambda conn: (conn, schema),
        "producer_name": "inventory",
        "codec": codec,
        "settings": settings,
    }
    spec = router.get("order.placed")
    assert spec is not None
    message = placed("o1")

    live: TransactionalDelivery[tuple[Connection, str]] = TransactionalDelivery(**options)
    assert await live.deliver("g", message, spec) is True
    [staged] = await db.pool.fetch(f"SELECT value FROM {schema}.outbox")
    emitted = codec.decode(bytes(staged["value"]))
    instant = emitted.envelope.occurred_at
    assert emitted.event.reserved_at == instant  # type: ignore[attr-defined]
    [inbox] = await rows(db, schema, "inbox")
    [seen] = await rows(db, schema, "seen")
    assert inbox["processed_at"] == seen["at"] == instant

    # Lost, then replayed at the instant the log shows: the same rows, nothing staged.
    for table in ("inbox", "seen", "outbox"):
        await db.pool.execute(f"DELETE FROM {schema}.{table}")
    checked: list[Sequence[Event]] = []
    replay: ReplayDelivery[Any] = ReplayDelivery(
        check=lambda cause, outputs: checked.append(outputs), **options
    )
    with frozen_clock(instant):
        assert await replay.deliver("g", message, spec) is True
        assert await replay.deliver("g", message, spec) is False  # the inbox still dedupes
    assert await rows(db, schema, "inbox") == [inbox]
    assert await rows(db, schema, "seen") == [seen]
    assert await outbox_size(db, schema) == 0
    assert checked == [[emitted.event]]
    assert replay.discarded == 1


async def test_a_replay_check_that_raises_rolls_the_message_back(
    settings: Settings, codec: Codec, db: Database
):
    schema = schema_name(settings, "replay")

    def refuse(cause: Message[Event], outputs: Sequence[Event]) -> None:
        raise ValueError("not what the log shows")

    replay: ReplayDelivery[tuple[Connection, str]] = ReplayDelivery(
        check=refuse,
        db=db,
        schema=schema,
        context_factory=lambda conn: (conn, schema),
        producer_name="inventory",
        codec=codec,
        settings=settings,
    )
    spec = router.get("order.placed")
    assert spec is not None
    with (
        frozen_clock(datetime(2026, 1, 1, tzinfo=UTC)),
        pytest.raises(ValueError, match="not what the log shows"),
    ):
        await replay.deliver("g", placed("o2"), spec)
    assert await rows(db, schema, "inbox") == []
    assert await rows(db, schema, "seen") == []
