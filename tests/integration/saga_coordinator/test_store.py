"""The SagaStore contract, run against the in-memory store and the real PostgreSQL store.

PostgreSQL-only behaviour (row locks of due timers, advisory locks, a concurrent append) has
its own tests below the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from events.database import Database, schema_name
from events.settings import Settings
from saga_coordinator import legacy
from saga_coordinator.engine.state import fold as fold_generic
from saga_coordinator.engine.timing import CancelTimer, ScheduleTimer
from saga_coordinator.errors import SagaConflictError
from saga_coordinator.facts import Fact
from saga_coordinator.memory_store import InMemorySagaStore
from saga_coordinator.store import Decided, FactRef, PostgresSagaStore, SagaStore, Timer
from saga_coordinator.store_sql import DDL
from sagas.order import V1 as ORDER
from sagas.shipped import SAGAS
from tests.unit.saga_coordinator.flow import (
    LARGE,
    T0,
    Driver,
    charged,
    declined,
    email_failed,
    placed,
    rejected,
    released,
    reserved,
    scheduled,
    shipment_failed,
)
from tests.unit.saga_coordinator.old_core.state import fold

pytestmark = pytest.mark.integration


async def status(store: SagaStore, key: str) -> str | None:
    """The saga's status as the coordinator folds it from the store (old facts upcast)."""
    facts = legacy.read(await store.load(key), SAGAS)
    return fold_generic(key, facts).status(ORDER) if facts else None


@contextlib.asynccontextmanager
async def migrated(settings: Settings) -> AsyncIterator[tuple[Database, str]]:
    """A database with the coordinator's tables in a schema of this test; dropped after."""
    schema = schema_name(settings, "saga_store")
    async with Database(settings) as db:
        await db.migrate(schema, *DDL)
        try:
            yield db, schema
        finally:
            await db.pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[tuple[Database, str]]:
    async with migrated(settings) as db_and_schema:
        yield db_and_schema


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[SagaStore]:
    if request.param == "memory":
        yield InMemorySagaStore()
        return
    async with migrated(settings) as (db, schema), db.pool.acquire() as conn:
        yield PostgresSagaStore(conn, schema)


def many_kinds_of_facts() -> list[Fact]:
    """Facts of several sagas' paths, so every field type goes through storage."""
    facts: list[Fact] = []
    saga = Driver()
    saga.send(placed(LARGE))
    saga.send(reserved())
    saga.advance(timedelta(days=1))  # approval timeout, release
    saga.advance(timedelta(seconds=60))  # retries, then exhausted
    saga.send(rejected())  # late: ignored
    saga.send(released())
    saga.send(charged(LARGE))  # late: refund added
    facts.extend(saga.facts)
    other = Driver()
    other.send(placed())
    other.send(reserved())
    other.send(charged())
    other.send(scheduled())
    other.send(email_failed())
    other.advance(timedelta(seconds=30))  # crm deadline: compensation
    facts.extend(other.facts)
    assert len({f.kind for f in facts}) >= 17
    return facts


# --------------------------------------------------------------------------- contract


async def test_an_unknown_saga_is_empty(store: SagaStore):
    assert await store.load("nope") == []
    assert await status(store, "nope") is None
    assert await store.timers("nope") == {}
    assert await store.all_sagas() == []
    assert await store.lock("nope") is True


async def test_facts_round_trip_in_order_through_several_appends(store: SagaStore):
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    saga.send(charged())
    saga.send(shipment_failed())
    saga.send(released())
    facts = saga.facts
    await store.append("ord-1", facts[:2], expected_seq=0)
    await store.append("ord-1", facts[2:], expected_seq=2)
    loaded = await store.load("ord-1")
    assert loaded == facts
    assert [type(f) for f in loaded] == [type(f) for f in facts]
    assert fold("ord-1", [f for f in loaded if isinstance(f, Fact)]) == saga.state
    assert await status(store, "ord-1") == "compensating"


async def test_every_kind_of_fact_survives_storage(store: SagaStore):
    facts = many_kinds_of_facts()
    await store.append("ord-x", facts, expected_seq=0)
    assert await store.load("ord-x") == facts


async def test_append_at_a_stale_position_conflicts_and_changes_nothing(store: SagaStore):
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    await store.append("ord-1", saga.facts, expected_seq=0)
    before = await store.load("ord-1")
    saga.send(declined())
    with pytest.raises(SagaConflictError) as behind:
        await store.append("ord-1", saga.facts[-2:], expected_seq=len(before) - 1)
    assert behind.value.retryable
    with pytest.raises(SagaConflictError):
        await store.append("ord-1", saga.facts[-2:], expected_seq=len(before) + 1)
    assert await store.load("ord-1") == before
    await store.append("ord-1", saga.facts[len(before) :], expected_seq=len(before))
    assert await store.load("ord-1") == saga.facts


async def test_appending_nothing_is_a_no_op(store: SagaStore):
    await store.append("ord-1", [], expected_seq=0)
    assert await store.all_sagas() == []


async def test_sagas_are_listed_and_have_their_own_status(store: SagaStore):
    for order_id, events in {
        "ord-b": [placed(), reserved()],
        "ord-a": [placed(LARGE), reserved()],
        "ord-c": [placed(), reserved(), declined()],
    }.items():
        saga = Driver(order_id=order_id)
        for event in events:
            saga.send(event)
        await store.append(order_id, saga.facts, expected_seq=0)
    assert await store.all_sagas() == ["ord-a", "ord-b", "ord-c"]
    assert await status(store, "ord-a") == "awaiting_approval"
    assert await status(store, "ord-b") == "reserved"
    assert await status(store, "ord-c") == "compensating"


async def test_timers_schedule_move_cancel_and_come_due_earliest_first(store: SagaStore):
    await store.schedule("ord-1", "deadline:payment", T0 + timedelta(seconds=30))
    await store.schedule("ord-1", "deadline:payment", T0 + timedelta(seconds=20))  # moved
    await store.schedule("ord-2", "deadline:inventory", T0 + timedelta(seconds=10))
    await store.schedule("ord-2", "ack:inventory.release", T0 + timedelta(seconds=40))
    await store.schedule("ord-3", "deadline:crm", T0 + timedelta(hours=1))
    assert await store.timers("ord-1") == {"deadline:payment": T0 + timedelta(seconds=20)}

    assert await store.due(T0 + timedelta(seconds=5), 10) == []
    assert not await store.any_due(T0 + timedelta(seconds=5))
    assert await store.any_due(T0 + timedelta(seconds=10))
    assert await store.due(T0 + timedelta(seconds=40), 10) == [
        Timer("ord-2", "deadline:inventory", T0 + timedelta(seconds=10)),
        Timer("ord-1", "deadline:payment", T0 + timedelta(seconds=20)),
        Timer("ord-2", "ack:inventory.release", T0 + timedelta(seconds=40)),
    ]
    assert [t.name for t in await store.due(T0 + timedelta(seconds=40), 2)] == [
        "deadline:inventory",
        "deadline:payment",
    ]

    await store.cancel("ord-2", "deadline:inventory")
    await store.cancel("ord-2", "deadline:inventory")  # twice: no error
    await store.cancel("ord-9", "deadline:crm")  # unknown: no error
    assert await store.timers("ord-2") == {"ack:inventory.release": T0 + timedelta(seconds=40)}
    assert [t.order_id for t in await store.due(T0 + timedelta(days=1), 10)] == [
        "ord-1",
        "ord-2",
        "ord-3",
    ]


async def test_a_decision_records_its_facts_and_timers_at_once(store: SagaStore):
    saga = Driver()
    saga.send(placed())
    await store.schedule("ord-1", "deadline:inventory", T0 + timedelta(seconds=10))
    await store.schedule("ord-1", "deadline:crm", T0 + timedelta(seconds=50))
    payment_due = T0 + timedelta(seconds=30)
    await store.record(
        "ord-1",
        saga.facts,
        expected_seq=0,
        timers=[
            CancelTimer("deadline:inventory"),
            ScheduleTimer("deadline:payment", T0 + timedelta(seconds=20)),
            ScheduleTimer("deadline:payment", payment_due),  # the last operation wins
            ScheduleTimer("deadline:crm", T0 + timedelta(seconds=60)),
            CancelTimer("deadline:crm"),
        ],
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert await store.load("ord-1") == saga.facts
    assert await store.timers("ord-1") == {"deadline:payment": payment_due}
    # A conflict changes nothing, timers included.
    recorded = list(saga.facts)
    saga.send(reserved())
    with pytest.raises(SagaConflictError):
        await store.record(
            "ord-1",
            saga.facts[len(recorded) :],
            expected_seq=0,
            timers=[CancelTimer("deadline:payment"), ScheduleTimer("deadline:x", T0)],
        )
    assert await store.load("ord-1") == recorded
    assert await store.timers("ord-1") == {"deadline:payment": payment_due}
    # Timers alone, no facts.
    await store.record("ord-1", [], expected_seq=1, timers=[CancelTimer("deadline:payment")])
    assert await store.timers("ord-1") == {}


async def test_a_held_timer_comes_due_when_its_hold_ends_and_a_new_due_time_ends_the_hold(
    store: SagaStore,
):
    due = T0 + timedelta(seconds=30)
    await store.schedule("ord-1", "deadline:payment", due)
    barrier = {("choreo.payment", 0): 7, ("choreo.payment", 2): 3}
    await store.hold("ord-1", "deadline:payment", T0 + timedelta(seconds=45), barrier)
    await store.hold("ord-9", "deadline:payment", T0, None)  # no such timer: nothing
    assert not await store.any_due(T0 + timedelta(seconds=44))
    assert await store.due(T0 + timedelta(seconds=44), 10) == []
    assert await store.timers("ord-1") == {"deadline:payment": due}  # its due time stays
    [held] = await store.due(T0 + timedelta(seconds=45), 10)
    assert (held.due_at, held.barrier) == (due, barrier)
    await store.schedule("ord-1", "deadline:payment", due)  # the same deadline: still held
    assert await store.due(T0 + timedelta(seconds=44), 10) == []
    later = T0 + timedelta(seconds=35)
    await store.schedule("ord-1", "deadline:payment", later)  # another deadline
    assert await store.due(T0 + timedelta(seconds=36), 10) == [
        Timer("ord-1", "deadline:payment", later)
    ]


# --------------------------------------------------------------------------- PostgreSQL only


async def test_migrations_are_idempotent(pg: tuple[Database, str]):
    db, schema = pg
    await db.migrate(schema, *DDL)
    columns = await db.pool.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = 'saga_events' ORDER BY ordinal_position",
        schema,
    )
    assert [c["column_name"] for c in columns] == [
        "order_id",
        "seq",
        "kind",
        "event_id",
        "data",
        "recorded_at",
    ]


async def test_due_timers_locked_by_one_poller_are_skipped_by_another(pg: tuple[Database, str]):
    db, schema = pg
    async with db.pool.acquire() as conn:
        setup = PostgresSagaStore(conn, schema)
        for i in range(4):
            await setup.schedule(f"ord-{i}", "deadline:payment", T0 + timedelta(seconds=i))
    now = T0 + timedelta(minutes=1)
    async with db.pool.acquire() as a, a.transaction(), db.pool.acquire() as b, b.transaction():
        first = await PostgresSagaStore(a, schema).due(now, 2)
        second = await PostgresSagaStore(b, schema).due(now, 10)
    assert [t.order_id for t in first] == ["ord-0", "ord-1"]
    assert [t.order_id for t in second] == ["ord-2", "ord-3"]


async def test_a_busy_saga_cannot_be_locked_without_waiting(pg: tuple[Database, str]):
    db, schema = pg
    async with db.pool.acquire() as a, a.transaction():
        assert await PostgresSagaStore(a, schema).lock("ord-1") is True
        async with db.pool.acquire() as b, b.transaction():
            other = PostgresSagaStore(b, schema)
            assert await other.lock("ord-1", wait=False) is False
            assert await other.lock("ord-2", wait=False) is True
    async with db.pool.acquire() as c, c.transaction():
        assert await PostgresSagaStore(c, schema).lock("ord-1", wait=False) is True


async def test_concurrent_appends_at_the_same_position_one_wins(pg: tuple[Database, str]):
    db, schema = pg
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    async with db.pool.acquire() as a, db.pool.acquire() as b:
        tx_a = a.transaction()
        await tx_a.start()
        await PostgresSagaStore(a, schema).append("ord-1", saga.facts[:1], expected_seq=0)
        tx_b = b.transaction()
        await tx_b.start()
        # B sees no row yet (A has not committed) and blocks on the unique key...
        blocked = asyncio.create_task(
            PostgresSagaStore(b, schema).append("ord-1", saga.facts, expected_seq=0)
        )
        await asyncio.sleep(0.2)
        assert not blocked.done()
        await tx_a.commit()
        # ...until A commits: then B's insert conflicts (and B's transaction is done for).
        with pytest.raises(SagaConflictError, match="concurrently"):
            await blocked
        await tx_b.rollback()
    async with db.pool.acquire() as conn:
        assert await PostgresSagaStore(conn, schema).load("ord-1") == saga.facts[:1]


def placed_reserved_charged() -> list[Fact]:
    """The first three facts of an order: placed, reserved, charged."""
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    saga.send(charged())
    return saga.facts[:3]


async def test_facts_after_a_known_one_and_none_when_it_is_not_the_stored_one(
    store: SagaStore,
):
    first, second, third = placed_reserved_charged()
    await store.append("ord-1", [first, second, third], expected_seq=0)
    known = FactRef.of(2, second)
    assert await store.load_after("ord-1", known) == [third]
    assert await store.lock_and_load("ord-1", known) == [third]
    assert await store.lock_and_load("ord-1", FactRef.of(3, third)) == []
    assert await store.lock_and_load("ord-1") == [first, second, third]
    assert await store.lock_and_load("nope") == []
    # Not what is stored there: a decision that never committed, or another writer's.
    stale = [
        FactRef.of(4, third),  # past the end
        FactRef.of(2, third),  # another fact at that position
        dataclasses.replace(known, at=known.at + timedelta(microseconds=1)),
        FactRef.of(1, second),
    ]
    for ref in stale:
        assert await store.load_after("ord-1", ref) is None, ref
        assert await store.lock_and_load("ord-1", ref) is None, ref


async def test_many_sagas_locked_and_read_at_once_each_from_its_own_position(store: SagaStore):
    first, second, third = placed_reserved_charged()
    await store.append("ord-1", [first, second, third], expected_seq=0)
    await store.append("ord-2", [first, second], expected_seq=0)
    found = await store.lock_and_load_many(
        {
            "ord-1": FactRef.of(2, second),  # known up to its second fact
            "ord-2": None,  # not known: the whole stream
            "ord-3": None,  # no saga yet
            "ord-4": FactRef.of(1, first),  # stale: there is no such saga
        }
    )
    assert found == {"ord-1": [third], "ord-2": [first, second], "ord-3": [], "ord-4": None}
    assert await store.lock_and_load_many({}) == {}


async def test_many_decisions_recorded_at_once_as_one_at_a_time_would(store: SagaStore):
    first, second, third = placed_reserved_charged()
    await store.append("ord-1", [first], expected_seq=0)
    await store.schedule("ord-1", "payment", T0 + timedelta(seconds=30))
    await store.schedule("ord-2", "crm", T0 + timedelta(seconds=30))
    later = T0 + timedelta(minutes=5)
    await store.record_many(
        [
            Decided("ord-1", [second], 1, [ScheduleTimer("shipping", T0), CancelTimer("payment")]),
            Decided("ord-2", [first], 0, [CancelTimer("crm")], traceparent="00-ab-cd-01"),
            Decided("ord-1", [third], 2, [ScheduleTimer("shipping", later)], "00-ef-01-01"),
            Decided("ord-2", [], 1, [ScheduleTimer("email", later)], "00-12-34-01"),
        ]
    )
    assert await store.load("ord-1") == [first, second, third]
    assert await store.load("ord-2") == [first]
    assert await store.timers("ord-1") == {"shipping": later}
    assert await store.timers("ord-2") == {"email": later}
    await store.record_many([])  # nothing to record: nothing happens


async def test_decisions_recorded_at_once_on_a_saga_that_moved_on_conflict(store: SagaStore):
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    first, second = saga.facts[:2]
    await store.append("ord-1", [first, second], expected_seq=0)
    with pytest.raises(SagaConflictError):
        await store.record_many([Decided("ord-1", [second], 1)])  # made on an older position
    with pytest.raises(SagaConflictError):
        # Two decisions of one saga that do not follow each other.
        await store.record_many([Decided("ord-2", [first], 0), Decided("ord-2", [second], 0)])
    assert await store.load("ord-1") == [first, second]


async def test_lock_and_load_many_holds_every_lock_and_sees_the_writer_it_waited_for(
    pg: tuple[Database, str],
):
    db, schema = pg
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    async with db.pool.acquire() as a, db.pool.acquire() as b, db.pool.acquire() as c:
        writer = a.transaction()
        await writer.start()
        assert await PostgresSagaStore(a, schema).lock("ord-2") is True
        await PostgresSagaStore(a, schema).append("ord-2", saga.facts, expected_seq=0)
        async with b.transaction():
            reader = PostgresSagaStore(b, schema)
            waiting = asyncio.create_task(
                reader.lock_and_load_many({"ord-1": None, "ord-2": None, "ord-3": None})
            )
            await asyncio.sleep(0.2)
            assert not waiting.done()  # ord-2's lock is A's
            await writer.commit()
            assert await waiting == {"ord-1": [], "ord-2": saga.facts, "ord-3": []}
            # Every lock is B's until its transaction ends.
            async with c.transaction():
                other = PostgresSagaStore(c, schema)
                for key in ("ord-1", "ord-2", "ord-3"):
                    assert await other.lock(key, wait=False) is False, key
        async with c.transaction():
            assert await PostgresSagaStore(c, schema).lock("ord-1", wait=False) is True


async def test_lock_and_load_sees_the_facts_of_the_writer_it_waited_for(pg: tuple[Database, str]):
    db, schema = pg
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    async with db.pool.acquire() as a, db.pool.acquire() as b:
        writer = a.transaction()
        await writer.start()
        assert await PostgresSagaStore(a, schema).lock("ord-1") is True
        await PostgresSagaStore(a, schema).append("ord-1", saga.facts, expected_seq=0)
        async with b.transaction():
            # B's statement starts while A holds the lock with its facts uncommitted...
            waiting = asyncio.create_task(PostgresSagaStore(b, schema).lock_and_load("ord-1"))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await writer.commit()
            # ...and reads after the lock is its own, so A's facts are there.
            assert await waiting == saga.facts
