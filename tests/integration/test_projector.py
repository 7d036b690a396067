"""The projector on the real broker and database: event log, read model, checkpoints."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from contracts.samples import EXAMPLES
from events.codec import Codec
from events.database import Connection, schema_name
from events.model import Event, Message
from events.producer import EventProducer, to_record
from events.schemas import event_types_in
from events.security import kafka_options
from events.settings import Settings
from projections import sagas_store, store
from projections.projector import Projector
from projections.queries import order_json
from projections.rebuild import rebuild
from projections.rebuild_lanes import RebuildError
from tests.integration.kafka_helpers import eventually

pytestmark = pytest.mark.integration
CAPTURED = ("customer_id", "total_minor", "currency")

ORDERS = "SELECT * FROM {schema}.saga_status WHERE saga_type = 'order' ORDER BY saga_key"

HAPPY = [
    "order.placed", "inventory.reserved", "order.approved", "payment.charged",
    "shipment.scheduled", "crm.customer_updated", "email.sent", "order.completed",
]  # fmt: skip
SHIPMENT_FAILED = [
    "order.placed", "inventory.reserved", "order.approved", "payment.charged",
    "shipment.failed", "payment.refund", "payment.refunded", "inventory.release",
    "inventory.released", "order.cancelled",
]  # fmt: skip


def saga_flow(
    saga_type: str, key: str, types: list[str], cancel_reason: str
) -> list[Message[Event]]:
    """The messages of one saga's flow, each caused by the one before (its ending, if
    ``<type>.cancelled``, with ``cancel_reason``)."""
    messages: list[Message[Event]] = [
        Message.first(EXAMPLES[types[0]], saga_type=saga_type, saga_key=key, producer="test")
    ]
    for event_type in types[1:]:
        event = EXAMPLES[event_type]
        if event_type == f"{saga_type}.cancelled":
            event = event.model_copy(update={"reason": cancel_reason})
        messages.append(messages[-1].caused(event, producer="test"))
    return messages


def flow(order_id: str, types: list[str]) -> list[Message[Event]]:
    """The messages of one order's flow (cancelled as ``shipment_failed``)."""
    return saga_flow("order", order_id, types, "shipment_failed")


INSPECTION_FAILED = [
    "return.requested", "return.approved", "pickup.scheduled", "inventory.restock_refused",
    "pickup.cancel", "pickup.cancelled", "return.cancelled",
]  # fmt: skip


def return_flow(return_id: str) -> list[Message[Event]]:
    """A return whose inspection failed: its pickup cancelled, the return cancelled."""
    return saga_flow("return", return_id, INSPECTION_FAILED, "inspection_failed")


async def project_until(projector: Projector, total: int) -> None:
    """Run ``projector`` until it has projected ``total`` events, then stop it."""
    task = asyncio.create_task(projector.run())
    try:
        await eventually(lambda: projector.stats.events == total, what=f"{total} events")
    finally:
        await projector.stop()
        await task


@pytest.fixture
async def projector(
    settings: Settings, codec: Codec, topics: list[str]
) -> AsyncIterator[Projector]:
    p = Projector(settings, codec)
    yield p
    await p.close()
    async with p.db as db:
        await db.pool.execute(f"DROP SCHEMA IF EXISTS {schema_name(settings, 'projector')} CASCADE")


async def test_orders_are_logged_and_projected(projector: Projector, producer: EventProducer):
    happy, failed = flow("ord-happy", HAPPY), flow("ord-failed", SHIPMENT_FAILED)
    await producer.publish(happy + failed)
    await project_until(projector, len(happy) + len(failed))
    async with projector.db.pool.acquire() as conn:
        rows = {
            r["saga_key"]: order_json(sagas_store.row_json(r))
            for r in await conn.fetch(ORDERS.format(schema=projector.schema))
        }
        history = await conn.fetch(
            f"SELECT event_type, summary FROM {projector.schema}.event_log"
            " WHERE order_id = 'ord-failed' ORDER BY occurred_at, position"
        )
    done = rows["ord-happy"]
    assert done["status"] == "completed"
    assert done["progress"] == {"done": 5, "expected": 5}  # the approval skipped: not counted
    assert [(s["step"], s["state"]) for s in done["timeline"]] == [
        ("inventory", "succeeded"), ("approval", "skipped"), ("payment", "succeeded"),
        ("shipping", "succeeded"), ("crm", "succeeded"), ("email", "succeeded"),
    ]  # fmt: skip
    assert all(s["finished_at"] is not None for s in done["timeline"])
    assert done["trace_id"] is not None
    assert len(done["trace_id"]) == 32
    placed = EXAMPLES["order.placed"].model_dump()
    assert [done[k] for k in CAPTURED] == [placed[k] for k in CAPTURED]
    cancelled = rows["ord-failed"]
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "shipment_failed")
    assert cancelled["compensations_done"] == ["inventory.release", "payment.refund"]
    assert cancelled["current_step"] is None
    assert {h["event_type"] for h in history} == set(SHIPMENT_FAILED)
    assert all("@" not in h["summary"] for h in history)  # no e-mail in the audit trail


async def test_restart_resumes_at_the_checkpoint_without_gap_or_duplicate(
    projector: Projector, producer: EventProducer, settings: Settings, codec: Codec
):
    first = [m for i in range(20) for m in flow(f"ord-a{i}", HAPPY)]
    await producer.publish(first)
    task = asyncio.create_task(projector.run())
    await eventually(lambda: projector.stats.events == len(first), what="first run")
    await projector.stop()
    await task
    await projector.close()

    second = [m for i in range(20) for m in flow(f"ord-b{i}", HAPPY)]
    await producer.publish(second)
    again = Projector(settings, codec)
    task = asyncio.create_task(again.run())
    try:
        # Only the new events: the log would reject a duplicate (strict insert) and fail.
        await eventually(lambda: again.stats.events == len(second), what="second run")
        await asyncio.sleep(0.5)
        assert again.stats.events == len(second)
    finally:
        await again.stop()
        await task
        await again.close()
    async with projector.db as db:
        total = await db.pool.fetchval(f"SELECT count(*) FROM {projector.schema}.event_log")
        completed = await db.pool.fetchval(
            f"SELECT count(*) FROM {projector.schema}.saga_status WHERE status = 'completed'"
        )
    assert total == len(first) + len(second)
    assert completed == 40


async def test_the_history_cache_folds_as_the_log_does_and_notices_other_writers(
    projector: Projector, producer: EventProducer
):
    from aiokafka import ConsumerRecord

    from projections.projector import log_row

    assert projector.cache is not None
    flows = {f"ord-c{i}": flow(f"ord-c{i}", HAPPY) for i in range(5)}
    await producer.publish([m for messages in flows.values() for m in messages[:4]])
    task = asyncio.create_task(projector.run())
    try:
        await eventually(lambda: projector.stats.events == 20, what="first halves")
        # Another writer (a second replica, say) logs ord-c0's next event: the cache's copy
        # of ord-c0 is now short of one, and must not be used.
        elsewhere = ConsumerRecord(
            topic="elsewhere", partition=0, offset=0, timestamp=0, timestamp_type=0, key=None,
            value=None, checksum=None, serialized_key_size=-1, serialized_value_size=-1,
            headers=(),
        )  # fmt: skip
        async with projector.db.pool.acquire() as conn, conn.transaction():
            await store.apply_batch(
                conn, projector.schema, [log_row(elsewhere, flows["ord-c0"][4])], {}
            )
        rest = [m for oid, ms in flows.items() for m in ms[4:] if m is not flows["ord-c0"][4]]
        await producer.publish(rest)
        await eventually(lambda: projector.stats.events == 20 + len(rest), what="the rest")
    finally:
        await projector.stop()
        await task
    assert projector.cache.misses == 1  # ord-c0, read back from the log once
    assert projector.cache.hits >= 4
    query = ORDERS.format(schema=projector.schema)
    async with projector.db.pool.acquire() as conn:
        live = [sagas_store.row_json(r) for r in await conn.fetch(query)]
        async with conn.transaction():  # the same orders folded from the log alone
            await store.refold(conn, projector.schema, flows)
            from_log = [sagas_store.row_json(r) for r in await conn.fetch(query)]
    assert live == from_log
    assert [(v["saga_key"], v["status"], v["event_count"]) for v in live] == [
        (oid, "completed", len(HAPPY)) for oid in sorted(flows)
    ]


async def test_a_rebuild_in_lanes_folds_orders_another_partitioner_spread_over_them(
    projector: Projector, settings: Settings, codec: Codec
):
    """Each message on another partition number (as when a client's partitioner differs from
    Choreo's): every lane sees part of every order and return; the lanes without a saga's
    start report its key, it is folded again from the whole log, and the rebuild still
    verifies clean."""
    orders = [flow(f"ord-split-{i}", HAPPY if i % 2 else SHIPMENT_FAILED) for i in range(6)]
    # And sagas of another type.
    returns = [return_flow(f"ret-split-{i}") for i in range(3)]
    records = [
        (record, position % settings.topic_partitions)
        for messages in orders + returns
        for position, message in enumerate(messages)
        for record in [to_record(message, codec, settings)]
    ]
    async with AIOKafkaProducer(**kafka_options(settings)) as raw:
        for record, partition in records:
            await raw.send_and_wait(
                record.topic, record.value, key=record.key, partition=partition,
                headers=list(record.headers),
            )  # fmt: skip
    await project_until(projector, len(records))
    report = await rebuild(settings, codec=codec, verify=True, workers=3)
    assert report.differences == []
    assert (report.events, report.sagas) == (len(records), len(orders) + len(returns))


async def test_a_lane_that_fails_fails_the_rebuild_and_leaves_the_live_tables(
    projector: Projector,
    producer: EventProducer,
    settings: Settings,
    codec: Codec,
    tmp_path: Path,
):
    """A worker lane that cannot start (a misnamed schema file where its settings say) fails
    the rebuild with the lane's reason while the other lane finishes: nothing hangs, the live
    tables are as they were, and the next rebuild swaps."""
    messages = flow("ord-lane-fails", HAPPY) + flow("ord-lane-fails-2", SHIPMENT_FAILED)
    await producer.publish(messages)
    await project_until(projector, len(messages))
    query = f"SELECT * FROM {projector.schema}.saga_status ORDER BY saga_key"
    log = f'SELECT topic, partition, "offset" FROM {projector.schema}.event_log ORDER BY 1, 2, 3'
    async with projector.db.pool.acquire() as conn:
        before = ([tuple(r) for r in await conn.fetch(query)], await conn.fetch(log))
    for event_type in event_types_in(settings.schemas_dir):  # the same topics, no schemas
        (tmp_path / event_type).mkdir()
        (tmp_path / event_type / "latest.avsc").write_text("{}")
    broken = settings.model_copy(update={"schemas_dir": tmp_path})
    with pytest.raises(RebuildError, match=r"schema files are named v<N>\.avsc"):
        await asyncio.wait_for(rebuild(broken, codec=codec, workers=2), timeout=60)
    async with projector.db.pool.acquire() as conn:
        after = ([tuple(r) for r in await conn.fetch(query)], await conn.fetch(log))
    assert after == before
    report = await rebuild(settings, codec=codec, verify=True, workers=2)
    assert (report.differences, report.events) == ([], len(messages))


async def test_a_cancelled_rebuild_stops_its_workers_and_leaves_the_live_tables(
    projector: Projector, producer: EventProducer, settings: Settings, codec: Codec
):
    """A rebuild cancelled once every lane has replayed (its workers folding or exiting)
    raises the cancellation only after joining them; the live tables are as they were, and
    the next rebuild swaps."""
    messages = flow("ord-cancelled-rebuild", HAPPY)
    await producer.publish(messages)
    await project_until(projector, len(messages))
    log = f'SELECT topic, partition, "offset" FROM {projector.schema}.event_log ORDER BY 1, 2, 3'
    async with projector.db.pool.acquire() as conn:
        before = await conn.fetch(log)
    began = asyncio.Event()
    rebuilding = asyncio.create_task(
        rebuild(
            settings,
            codec=codec,
            workers=3,
            progress=lambda done, total: began.set() if done == total else None,
        )
    )
    await began.wait()
    rebuilding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rebuilding
    workers = [p for p in multiprocessing.active_children() if p.name.startswith("choreo-rebuild")]
    assert workers == []
    async with projector.db.pool.acquire() as conn:
        assert await conn.fetch(log) == before
    report = await rebuild(settings, codec=codec, verify=True, workers=3)
    assert (report.differences, report.events) == ([], len(messages))


async def test_sagas_are_projected_and_rebuilt_alike(
    projector: Projector, producer: EventProducer, settings: Settings, codec: Codec
):
    """saga_status: one row per saga, in the batch's transaction; none for a key whose saga
    never started; a rebuild gives the same rows (verify compares them)."""
    happy, failed = flow("ord-s-happy", HAPPY), flow("ord-s-failed", SHIPMENT_FAILED)
    orphan = flow("ord-s-orphan", HAPPY[1:3])  # no order.placed: no saga known for this key
    await producer.publish(happy + failed + orphan)
    await project_until(projector, len(happy) + len(failed) + len(orphan))
    query = f"SELECT * FROM {projector.schema}.saga_status ORDER BY saga_key"
    async with projector.db.pool.acquire() as conn:
        live = [sagas_store.row_json(r) for r in await conn.fetch(query)]
    assert [(s["saga_type"], s["saga_key"], s["version"]) for s in live] == [
        ("order", "ord-s-failed", 1),
        ("order", "ord-s-happy", 1),
    ]
    cancelled, done = live
    assert (done["status"], done["progress"], done["current_steps"]) == (
        "completed", {"done": 5, "expected": 5}, []
    )  # fmt: skip
    assert done["ended_at"] is not None
    assert [s["state"] for s in done["steps"]] == ["succeeded", "skipped", *["succeeded"] * 4]
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "shipment_failed")
    assert [(c["step"], c["command"], c["acknowledged_at"] is not None) for c in
            cancelled["compensations"]] == [("payment", "payment.refund", True),
                                            ("inventory", "inventory.release", True)]  # fmt: skip
    report = await rebuild(settings, codec=codec, verify=True, workers=2)
    assert report.differences == []
    async with projector.db as db:
        rebuilt = [sagas_store.row_json(r) for r in await db.pool.fetch(query)]
    assert rebuilt == live


async def compressions(conn: Connection, table: str) -> list[tuple[object, ...]]:
    """How ``table`` compresses its timeline and compensations: ``(column, method)``."""
    rows = await conn.fetch(
        "SELECT attname, attcompression::text FROM pg_attribute WHERE attrelid ="
        " to_regclass($1) AND attname IN ('timeline', 'compensations') ORDER BY attname",
        table,
    )
    return [tuple(r) for r in rows]


async def test_saga_rows_keep_their_timelines_lz4_compressed(
    projector: Projector, producer: EventProducer, settings: Settings, codec: Codec
):
    """A saga's timeline is over the size PostgreSQL compresses at: the live table, one of an
    older projector (pglz, PostgreSQL's default) after the next start's migration, and a
    rebuilt one all compress it with LZ4."""
    messages = flow("ord-lz4", HAPPY) + flow("ord-lz4-failed", SHIPMENT_FAILED)
    await producer.publish(messages)
    await project_until(projector, len(messages))
    table = f"{projector.schema}.saga_status"
    timelines = f"SELECT DISTINCT pg_column_compression(timeline) FROM {table}"
    lz4 = [("compensations", "l"), ("timeline", "l")]
    async with projector.db.pool.acquire() as conn:
        assert await compressions(conn, table) == lz4
        assert await conn.fetch(timelines) == [("lz4",)]
        await conn.execute(
            f"ALTER TABLE {table} ALTER COLUMN timeline SET COMPRESSION pglz,"
            " ALTER COLUMN compensations SET COMPRESSION pglz"
        )
    await projector.db.migrate(projector.schema, *store.ddl())
    async with projector.db.pool.acquire() as conn:
        assert await compressions(conn, table) == lz4
    await rebuild(settings, codec=codec)
    async with projector.db.pool.acquire() as conn:
        assert await compressions(conn, table) == lz4
        assert await conn.fetch(timelines) == [("lz4",)]


async def test_saga_rows_leave_room_on_their_pages_for_updates(
    projector: Projector, producer: EventProducer, settings: Settings, codec: Codec
):
    """``saga_status`` fills its pages to 70% (an update keeps the row on its page, without
    writing the indexes): the live table, one of an older projector after the next start's
    migration, and a rebuilt one (loaded packed, the option set for the rows inserted
    after)."""
    messages = flow("ord-room", HAPPY)
    await producer.publish(messages)
    await project_until(projector, len(messages))
    table = f"{projector.schema}.saga_status"
    options = "SELECT reloptions FROM pg_class WHERE oid = to_regclass($1)"
    room = [f"fillfactor={sagas_store.FILLFACTOR}"]
    async with projector.db.pool.acquire() as conn:
        assert await conn.fetchval(options, table) == room
        await conn.execute(f"ALTER TABLE {table} RESET (fillfactor)")
        assert await conn.fetchval(options, table) is None
    await projector.db.migrate(projector.schema, *store.ddl())
    async with projector.db.pool.acquire() as conn:
        assert await conn.fetchval(options, table) == room
    await rebuild(settings, codec=codec)
    async with projector.db.pool.acquire() as conn:
        assert await conn.fetchval(options, table) == room
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1


async def test_a_saga_projected_before_its_start_is_folded_whole_when_it_comes(
    projector: Projector, producer: EventProducer, settings: Settings, codec: Codec
):
    """A return's later events projected before its ``return.requested`` (they come from other
    topics, which the projector may read first): no saga claims them (no row; the orders list
    does not show them as an order, as it once did), and when the start comes the row is
    folded from all of them, the earlier ones read back from the log."""
    late = return_flow("ret-late-start")
    query = f"SELECT saga_type, status, event_count FROM {projector.schema}.saga_status"
    task = asyncio.create_task(projector.run())
    try:
        await producer.publish(late[1:])
        await eventually(lambda: projector.stats.events == len(late) - 1, what="the rest")
        async with projector.db.pool.acquire() as conn:
            assert await conn.fetch(query) == []
        await producer.publish(late[:1])
        await eventually(lambda: projector.stats.events == len(late), what="the start")
    finally:
        await projector.stop()
        await task
    async with projector.db.pool.acquire() as conn:
        assert [tuple(r) for r in await conn.fetch(query)] == [("return", "cancelled", len(late))]
    report = await rebuild(settings, codec=codec, verify=True)
    assert report.differences == []
    assert report.sagas == 1


SAGA_ROWS = "SELECT saga_key, trace_id, attributes::text FROM {schema}.saga_status ORDER BY 1"


async def older_layout(
    projector: Projector, producer: EventProducer, messages: list[Message[Event]]
) -> tuple[str, list[tuple[object, ...]]]:
    """Project ``messages``, then leave ``saga_status`` as a projector before its trace and
    captures did (those columns gone). Returns the query of the rows' key, trace and captures,
    and those rows as the projector had folded them."""
    await producer.publish(messages)
    await project_until(projector, len(messages))
    query = SAGA_ROWS.format(schema=projector.schema)
    async with projector.db.pool.acquire() as conn:
        folded = [tuple(r) for r in await conn.fetch(query)]
        await conn.execute(
            f"ALTER TABLE {projector.schema}.saga_status DROP COLUMN trace_id,"
            " DROP COLUMN attributes"
        )
    return query, folded


async def queued(conn: Connection, projector: Projector) -> bool:
    """Whether an upgrade's queue of rows to fold again is there."""
    queue = f"{projector.schema}.{sagas_store.BACKFILL}"
    return await conn.fetchval("SELECT to_regclass($1)", queue) is not None


async def test_the_order_read_model_of_older_projectors_moves_into_the_saga_rows(
    projector: Projector, producer: EventProducer
):
    """Projectors before the orders API read ``saga_status`` kept the order's trace, customer
    and total in ``order_status`` only: the next start moves them into the order saga's rows
    (which lacked those columns) and drops the old table; every older row (a return's too)
    is folded again from the log for its trace and start captures."""
    messages = flow("ord-kept", HAPPY) + return_flow("ret-kept")
    query, folded = await older_layout(projector, producer, messages)
    (order,) = [r for r in folded if r[0] == "ord-kept"]
    customer, total, currency = (orjson.loads(str(order[2]))[k] for k in CAPTURED)
    async with projector.db.pool.acquire() as conn:
        # And the order read model it kept beside.
        await conn.execute(
            f"CREATE TABLE {projector.schema}.order_status (order_id text PRIMARY KEY,"
            " trace_id text, customer_id text, total_minor bigint, currency text)"
        )
        await conn.execute(
            f"INSERT INTO {projector.schema}.order_status VALUES ($1, $2, $3, $4, $5)",
            "ord-kept", order[1], customer, total, currency,
        )  # fmt: skip
    await projector.db.migrate(projector.schema, *store.ddl())
    async with projector.db.pool.acquire() as conn:
        moved = [tuple(r) for r in await conn.fetch(query)]
        assert (
            await conn.fetchval("SELECT to_regclass($1)", f"{projector.schema}.order_status")
            is None
        )
    assert moved == [("ord-kept", order[1], order[2]), ("ret-kept", None, "{}")]
    await projector.start()  # the start folds the queued rows again
    async with projector.db.pool.acquire() as conn:
        assert [tuple(r) for r in await conn.fetch(query)] == folded
        assert not await queued(conn, projector)
        assert await store.backfill(conn, projector.schema) == 0  # nothing queued any more
    await projector.db.migrate(projector.schema, *store.ddl())  # and once moved, nothing more


async def test_a_rebuild_after_an_upgrade_leaves_no_rows_to_fold_again(
    projector: Projector, producer: EventProducer, settings: Settings, codec: Codec
):
    """The migration queues an older projector's rows to be folded again at the next start;
    a rebuild before that start folds every row from the log itself, and drops the queue."""
    messages = flow("ord-upgraded", HAPPY) + return_flow("ret-upgraded")
    query, folded = await older_layout(projector, producer, messages)
    report = await rebuild(settings, codec=codec)
    assert report.sagas == 2
    async with projector.db.pool.acquire() as conn:
        assert [tuple(r) for r in await conn.fetch(query)] == folded
        assert not await queued(conn, projector)


async def test_two_projectors_starting_together_fold_the_queue_once_between_them(
    projector: Projector, producer: EventProducer
):
    """Replicas of the projector may start at once after an upgrade: they share the queue
    batch by batch under the projector's lock, and whichever finds it empty last finds it
    gone without an error."""
    messages = [m for i in range(3) for m in flow(f"ord-both-{i}", HAPPY)]
    messages += [m for i in range(2) for m in return_flow(f"ret-both-{i}")]
    query, folded = await older_layout(projector, producer, messages)
    await projector.db.migrate(projector.schema, *store.ddl())
    async with projector.db.pool.acquire() as one, projector.db.pool.acquire() as other:
        counts = await asyncio.gather(
            store.backfill(one, projector.schema, batch=1),
            store.backfill(other, projector.schema, batch=1),
        )
        assert sum(counts) == len(folded) == 5
        assert [tuple(r) for r in await one.fetch(query)] == folded
        assert not await queued(one, projector)
