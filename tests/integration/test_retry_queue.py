"""The retry queue shared by replicas of a process: each due record goes to one of them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import ConsumerRecord

from events.retry_queue import PostgresRetryQueue
from tests.integration.conftest import Scratch

pytestmark = pytest.mark.integration


def _record(offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t.order", partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=b"ord-1", value=b"v", checksum=None, serialized_key_size=-1,
        serialized_value_size=-1, headers=(),
    )  # fmt: skip


async def test_replicas_polling_at_once_claim_each_due_record_once(scratch: Scratch):
    db, schema = scratch.db, scratch.schema
    await db.migrate(schema)
    replicas = [PostgresRetryQueue(db, schema, lease_s=1.0) for _ in range(2)]
    for offset in range(40):
        await replicas[0].park("group", _record(offset), attempts=1, delay_s=0, error="busy")

    claims = await asyncio.gather(*(q.due("group", limit=25) for q in replicas * 2))
    offsets = [p.record.offset for claim in claims for p in claim]
    assert sorted(offsets) == list(range(40))  # every record once, none twice
    assert [p.record.offset for p in claims[0]] == sorted(p.record.offset for p in claims[0])
    assert await replicas[1].due("group") == []  # claimed: not due for anyone else

    # An attempt that ends deletes its row; a replica that died leaves it to its lease.
    for parked in claims[0]:
        await replicas[0].done_unless_reparked(parked)
    await asyncio.sleep(1.2)
    again = await replicas[1].due("group", limit=100)
    assert sorted(p.record.offset for p in again) == sorted(
        offset for claim in claims[1:] for offset in (p.record.offset for p in claim)
    )
    assert all(p.attempts == 1 for p in again)


async def test_claims_not_attempted_are_released_at_once(scratch: Scratch):
    db, schema = scratch.db, scratch.schema
    await db.migrate(schema)
    queue = PostgresRetryQueue(db, schema, lease_s=60.0)
    for offset in range(3):
        await queue.park("group", _record(offset), attempts=1, delay_s=0, error="busy")
    claimed = await queue.due("group")
    assert await queue.due("group") == []
    # One was parked again meanwhile (its next attempt's delay stands); two go back now.
    await queue.park("group", claimed[0].record, attempts=2, delay_s=60, error="busy")
    await queue.release(claimed)
    assert [p.record.offset for p in await queue.due("group")] == [1, 2]


async def test_an_idle_queue_waits_for_the_earliest_due_time_or_a_park(scratch: Scratch):
    db, schema = scratch.db, scratch.schema
    await db.migrate(schema)
    queue = PostgresRetryQueue(db, schema)
    stopping = asyncio.Event()

    # Nothing parked: the wait lasts until a record is parked here.
    waiting = asyncio.create_task(queue.until_due("group", 60.0, stopping))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await queue.park("group", _record(1), attempts=1, delay_s=30, error="busy")
    await asyncio.wait_for(waiting, 5)

    # A record due in 30 s, another consumer's due now: the wait is for this consumer's.
    await queue.park("other", _record(2), attempts=1, delay_s=0, error="busy")
    waiting = asyncio.create_task(queue.until_due("group", 60.0, stopping))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    stopping.set()  # ... or until the process stops
    await asyncio.wait_for(waiting, 5)

    # A record due in a moment ends the wait at its due time, long before the longest wait.
    stopping.clear()
    await queue.park("group", _record(3), attempts=1, delay_s=0.5, error="busy")
    other = PostgresRetryQueue(db, schema)  # a replica that parked nothing itself
    await asyncio.wait_for(other.until_due("group", 60.0, stopping), 5)
    assert [p.record.offset for p in await other.due("group")] == [3]
