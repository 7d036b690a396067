"""Inbox + state change + outbox in one PostgreSQL transaction, on the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from contracts.catalog import CATALOG, InventoryReserved, OrderPlaced
from contracts.parts import ReservedItem
from contracts.samples import sample_order_placed
from events.codec import Codec
from events.consumer import EventConsumer
from events.database import Connection, Database, schema_name
from events.delivery import TransactionalDelivery
from events.errors import TransientError
from events.model import Event, Message, utc_now
from events.outbox import OutboxRelay, outbox_size, stage
from events.producer import EventProducer, to_record
from events.router import Router
from events.settings import Settings
from events.topics import topic_for
from tests.integration.kafka_helpers import FailingOnce, eventually, read_records

pytestmark = pytest.mark.integration

STATE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.reserved_units (
    order_id text PRIMARY KEY,
    units    int  NOT NULL
)
"""


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        yield database
        await database.pool.execute(f"DROP SCHEMA IF EXISTS {schema_name(settings, 'txn')} CASCADE")


def on_connection(
    db: Database,
    schema: str,
    codec: Codec,
    settings: Settings,
    producer_name: str,
    relay: OutboxRelay | None = None,
) -> TransactionalDelivery[Connection]:
    """A delivery whose handlers' context is the transaction's connection itself."""
    return TransactionalDelivery(
        db=db,
        schema=schema,
        context_factory=lambda conn: conn,
        producer_name=producer_name,
        codec=codec,
        settings=settings,
        relay=relay,
    )


@pytest.mark.parametrize("batches", [True, False], ids=["batch", "per-record"])
async def test_redelivery_has_no_second_effect_and_failures_leave_no_trace(
    settings: Settings, codec: Codec, producer: EventProducer, db: Database, batches: bool
):
    settings = settings.model_copy(
        update={"handler_backoff_initial_ms": 10, "consumer_batch_transactions": batches}
    )
    schema = schema_name(settings, "txn")
    await db.migrate(schema, STATE_DDL)
    relay = OutboxRelay(db, schema, producer, poll_interval_s=0.05)
    fail_first_attempt = {"ord-fail"}
    router: Router[Connection] = Router("txn", CATALOG)

    @router.on(OrderPlaced)
    async def reserve(message: Message[OrderPlaced], conn: Connection) -> list[Event]:
        units = sum(item.quantity for item in message.event.items)
        await conn.execute(
            f"INSERT INTO {schema}.reserved_units VALUES ($1, $2)", message.saga_key, units
        )
        if message.saga_key in fail_first_attempt:
            fail_first_attempt.discard(message.saga_key)
            raise TransientError("stock service hiccup")  # after the write: must roll back
        return [
            InventoryReserved(
                reservation_id=f"res-{message.saga_key}",
                items=tuple(
                    ReservedItem(sku=i.sku, quantity=i.quantity) for i in message.event.items
                ),
                reserved_at=utc_now(),
            )
        ]

    delivery = on_connection(db, schema, codec, settings, "inventory-test", relay)
    consumer = EventConsumer(
        name="txn",
        group_id=f"{settings.topic_prefix}txn",
        router=router,
        delivery=delivery,
        codec=codec,
        producer=producer,
        settings=settings,
    )
    orders = [
        Message.first(sample_order_placed(), saga_type="order", saga_key=order_id, producer="test")
        for order_id in ("ord-1", "ord-2", "ord-fail")
    ]
    # Every message twice: the second copy must change nothing and emit nothing.
    await producer.publish(orders + orders)

    relay_task = asyncio.create_task(relay.run())
    consumer_task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: consumer.stats.processed == 6, what="six deliveries")
        await eventually(lambda: relay.published == 3, what="three published reservations")
    finally:
        await consumer.stop()
        await consumer_task
        await relay.stop()
        await relay_task

    assert delivery.duplicates == 3
    if batches:
        # ord-fail's failure rolled its batch back; alone, it then succeeded at once.
        assert (consumer.stats.batches_rolled_back, consumer.stats.retried) == (1, 0)
    else:
        # ord-fail: rolled back, then succeeded on its retry.
        assert (consumer.stats.batches_rolled_back, consumer.stats.retried) == (0, 1)
    rows = await db.pool.fetch(f"SELECT order_id, units FROM {schema}.reserved_units ORDER BY 1")
    assert [(r["order_id"], r["units"]) for r in rows] == [
        ("ord-1", 3),
        ("ord-2", 3),
        ("ord-fail", 3),
    ]
    inbox = await db.pool.fetchval(f"SELECT count(*) FROM {schema}.inbox")
    assert inbox == 3
    assert await outbox_size(db, schema) == 0

    records = await read_records(settings, [topic_for("inventory.reserved", settings)], 3)
    published: dict[str, Any] = {}
    for record in records:
        message = codec.decode(record.value)
        published[message.saga_key] = message
    assert sorted(published) == ["ord-1", "ord-2", "ord-fail"]
    causes = {str(m.envelope.event_id): m.saga_key for m in orders}
    for order_id, message in published.items():
        assert message.envelope.producer == "inventory-test"
        assert causes[message.envelope.causation_id] == order_id


async def staged_orders(
    settings: Settings, codec: Codec, db: Database, order_ids: list[str]
) -> str:
    """``order.placed`` of each order staged in the outbox of the test's schema (returned), as
    a delivery's commit leaves them."""
    schema = schema_name(settings, "txn")
    await db.migrate(schema)
    messages = [
        Message.first(sample_order_placed(), saga_type="order", saga_key=key, producer="test")
        for key in order_ids
    ]
    async with db.pool.acquire() as conn, conn.transaction():
        await stage(conn, schema, [to_record(m, codec, settings) for m in messages])
    return schema


async def test_outbox_rows_survive_until_the_relay_runs(
    settings: Settings, codec: Codec, producer: EventProducer, db: Database
):
    """A crash after commit but before publishing loses nothing: the rows wait in the outbox."""
    schema = await staged_orders(settings, codec, db, [f"ord-{i}" for i in range(5)])
    assert await outbox_size(db, schema) == 5

    relay = OutboxRelay(db, schema, producer)  # "after the restart"
    assert await relay.flush() == 5
    assert await outbox_size(db, schema) == 0
    records = await read_records(settings, [topic_for("order.placed", settings)], 5)
    assert sorted(codec.decode(r.value).saga_key for r in records) == [f"ord-{i}" for i in range(5)]


async def test_a_failed_publish_leaves_the_rows_and_the_relay_goes_on(
    settings: Settings, codec: Codec, producer: EventProducer, db: Database
):
    schema = await staged_orders(settings, codec, db, [f"ord-away-{i}" for i in range(3)])
    failing = FailingOnce(producer)
    relay = OutboxRelay(db, schema, failing, poll_interval_s=0.05)  # type: ignore[arg-type]
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay.published == 3, what="the rows published after a failure")
    finally:
        await relay.stop()
        await running
    assert failing.failures == 1
    assert await outbox_size(db, schema) == 0
    records = await read_records(settings, [topic_for("order.placed", settings)], 3)
    keys = [codec.decode(r.value).saga_key for r in records]
    assert sorted(k for k in keys if k.startswith("ord-away-")) == [
        f"ord-away-{i}" for i in range(3)
    ]


async def test_a_retrying_message_does_not_block_the_messages_behind_it(
    settings: Settings, codec: Codec, producer: EventProducer, db: Database
):
    from events.retry_queue import PostgresRetryQueue

    schema = schema_name(settings, "txn")
    await db.migrate(schema)
    settings = settings.model_copy(
        update={"handler_backoff_initial_ms": 400, "handler_max_attempts": 4}
    )
    # One key, hence one partition: the first message fails twice, five wait behind it.
    messages = [
        Message.first(sample_order_placed(), saga_type="order", saga_key="ord-shared", producer="t")
        for _ in range(6)
    ]
    slow_id = messages[0].envelope.event_id
    failures_left = 2
    handled: list[uuid.UUID] = []
    router: Router[Connection] = Router("txn", CATALOG)

    @router.on(OrderPlaced)
    async def handle(message: Message[OrderPlaced], conn: Connection) -> list[Event]:
        nonlocal failures_left
        if message.envelope.event_id == slow_id and failures_left > 0:
            failures_left -= 1
            raise TransientError("gateway busy")
        handled.append(message.envelope.event_id)
        return []

    queue = PostgresRetryQueue(db, schema)
    consumer = EventConsumer(
        name="txn",
        group_id=f"{settings.topic_prefix}txn",
        router=router,
        delivery=on_connection(db, schema, codec, settings, "t"),
        codec=codec,
        producer=producer,
        settings=settings,
        retry_queue=queue,
    )
    await producer.publish(messages)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: len(handled) == 6, timeout=30, what="all six messages")
    finally:
        await consumer.stop()
        await task
    # The five behind it were handled, in order, while the first waited for its retries.
    assert handled == [m.envelope.event_id for m in messages[1:]] + [slow_id]
    # Failure 1 rolled back the poll's batch; failure 2, delivered alone, parked it once.
    assert (consumer.stats.batches_rolled_back, consumer.stats.retried) == (1, 1)
    assert await queue.size() == 0


class BatchContext:
    """A handler context that tells which transaction built it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn


async def test_a_scoped_batch_shares_one_context_its_scope_was_given_with_its_new_messages(
    settings: Settings, codec: Codec, db: Database
):
    schema = schema_name(settings, "txn")
    await db.migrate(schema)
    scoped: list[tuple[BatchContext, list[str]]] = []
    seen: list[tuple[str, object]] = []  # what happened, in order
    router: Router[BatchContext] = Router("txn", CATALOG)

    @router.on(OrderPlaced)
    async def note(message: Message[OrderPlaced], ctx: BatchContext) -> list[Event]:
        seen.append((message.saga_key, ctx))
        if message.saga_key == "ord-fail":
            raise TransientError("rolls the batch back")
        return []

    @contextlib.asynccontextmanager
    async def scope(ctx: BatchContext, messages: Sequence[Message[Event]]) -> AsyncIterator[None]:
        scoped.append((ctx, [m.saga_key for m in messages]))
        seen.append(("entered", ctx))
        yield
        seen.append(("left", ctx))

    delivery: TransactionalDelivery[BatchContext] = TransactionalDelivery(
        db=db,
        schema=schema,
        context_factory=BatchContext,
        producer_name="txn",
        codec=codec,
        settings=settings,
        batch_scope=scope,
    )
    handler = router.get("order.placed")
    assert handler is not None
    one, two, three, fail = (
        Message.first(sample_order_placed(), saga_type="order", saga_key=key, producer="test")
        for key in ("ord-1", "ord-2", "ord-3", "ord-fail")
    )
    async with delivery.batch("txn", [one, two]) as batch:
        for message in (one, two):
            assert await batch.deliver(message, handler) is True
    [(context, keys)] = scoped
    assert keys == ["ord-1", "ord-2"]
    assert seen == [("entered", context), ("ord-1", context), ("ord-2", context), ("left", context)]
    # A redelivered message is not among those the scope is given; a new batch, a new context.
    async with delivery.batch("txn", [one, three]) as batch:
        assert await batch.deliver(one, handler) is False
        assert await batch.deliver(three, handler) is True
    second, keys = scoped[1]
    assert keys == ["ord-3"]
    assert second is not context
    # A handler that raises: the scope is not left as done, and nothing of the batch stays.
    seen.clear()
    with pytest.raises(TransientError):
        async with delivery.batch("txn", [fail]) as batch:
            await batch.deliver(fail, handler)
    assert [what for what, _ in seen] == ["entered", "ord-fail"]
    assert await db.pool.fetchval(f"SELECT count(*) FROM {schema}.inbox") == 3
    # Alone (the retrying path), a message gets a context of its own and no scope.
    four = Message.first(sample_order_placed(), saga_type="order", saga_key="ord-4", producer="t")
    assert await delivery.deliver("txn", four, handler) is True
    assert len(scoped) == 3
    assert seen[-1][1] not in (context, second, scoped[2][0])


@pytest.mark.parametrize("batches", [True, False], ids=["batch", "per-record"])
async def test_a_delivery_deletes_the_rows_earlier_deliveries_published_in_its_own_commit(
    settings: Settings, codec: Codec, producer: EventProducer, db: Database, batches: bool
):
    schema = schema_name(settings, "txn")
    await db.migrate(schema)
    relay = OutboxRelay(db, schema, producer)
    router: Router[Connection] = Router("txn", CATALOG)

    @router.on(OrderPlaced)
    async def place_again(message: Message[OrderPlaced], conn: Connection) -> list[Event]:
        if message.saga_key == "ord-fail":
            raise TransientError("rolls back, deletes included")
        return [message.event]

    delivery = on_connection(db, schema, codec, settings, "txn", relay)
    handler = router.get("order.placed")
    assert handler is not None

    async def deliver(key: str) -> None:
        message = Message.first(
            sample_order_placed(), saga_type="order", saga_key=key, producer="test"
        )
        if not batches:
            await delivery.deliver("txn", message, handler)
            return
        async with delivery.batch("txn", [message]) as batch:
            await batch.deliver(message, handler)

    async def outbox_keys() -> list[bytes]:
        rows = await db.pool.fetch(f"SELECT key FROM {schema}.outbox ORDER BY id")
        return [bytes(row["key"]) for row in rows]

    await deliver("ord-1")
    assert await outbox_keys() == [b"ord-1"]  # published; its delete waits
    with pytest.raises(TransientError):
        await deliver("ord-fail")
    assert await outbox_keys() == [b"ord-1"]  # the rollback kept it for the next one
    await deliver("ord-2")
    assert await outbox_keys() == [b"ord-2"]
    await deliver("ord-2")  # the same key again: not fenced by its published row
    assert (relay.published_after_commit, relay.left_to_relay) == (3, 0)
    assert await outbox_keys() == [b"ord-2"]
    records = await read_records(settings, [topic_for("order.placed", settings)], 3)
    assert sorted(codec.decode(r.value).saga_key for r in records) == ["ord-1", "ord-2", "ord-2"]
