"""The retry loop's pass over the records it claimed: keys side by side, a key's records in
due order, and claims it did not attempt handed back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import ConsumerRecord

from events.retries import redeliver_parked


@dataclass(frozen=True)
class Parked:
    id: int
    record: ConsumerRecord
    attempts: int


def record(key: bytes, offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=key,
        value=b"v", checksum=None, serialized_key_size=-1, serialized_value_size=-1, headers=(),
    )  # fmt: skip


def parked(*keys_and_attempts: tuple[bytes, int]) -> list[Parked]:
    """Parked records of the given keys and attempts, in due order (ids and offsets from 1)."""
    return [
        Parked(n, record(key, n), attempts)
        for n, (key, attempts) in enumerate(keys_and_attempts, start=1)
    ]


class OnePassQueue:
    """Hands out ``parked`` on the first poll, nothing after; records what the loop did."""

    def __init__(self, parked: Sequence[Parked]) -> None:
        self.parked = list(parked)
        self.total = len(parked)
        self.done: list[int] = []
        self.released: list[int] = []
        self.settled = asyncio.Event()
        self.idle_waits = 0
        """Set once every record was finished or handed back."""

    def _note(self) -> None:
        if len(self.done) + len(self.released) >= self.total:
            self.settled.set()

    async def park(self, *args: object) -> None:
        raise AssertionError("not parked by this test")

    async def due(self, consumer: str, limit: int = 100) -> list[Parked]:
        parked, self.parked = self.parked, []
        return parked

    async def done_unless_reparked(self, parked: Parked) -> None:
        self.done.append(parked.id)
        self._note()

    async def until_due(self, consumer: str, longest_s: float, stopping: asyncio.Event) -> None:
        self.idle_waits += 1
        await asyncio.sleep(0.01)

    async def release(self, parked: Sequence[Parked]) -> None:
        self.released.extend(p.id for p in parked)
        self._note()


async def run_one_pass(queue: OnePassQueue, process, concurrency: int) -> None:
    stopping = asyncio.Event()
    loop = asyncio.create_task(
        redeliver_parked("p", "g", queue, process, stopping, 0.01, concurrency=concurrency)
    )
    await asyncio.wait_for(queue.settled.wait(), 5)
    stopping.set()
    await loop


async def test_keys_are_retried_side_by_side_and_each_keys_records_in_due_order():
    queue = OnePassQueue(parked((b"a", 1), (b"b", 1), (b"a", 2), (b"b", 1)))
    started: list[tuple[bytes, int]] = []
    both_running = asyncio.Event()

    async def process(rec: ConsumerRecord, attempt: int) -> bool:
        started.append((rec.key, attempt))
        if len(started) == 2:
            both_running.set()
        # The first record of each key waits until the other key's first one has begun: a
        # loop that took one record at a time would never get there.
        await asyncio.wait_for(both_running.wait(), 1)
        return True

    await run_one_pass(queue, process, concurrency=2)
    assert started[:2] == [(b"a", 2), (b"b", 2)]
    assert [s for s in started if s[0] == b"a"] == [(b"a", 2), (b"a", 3)]
    assert sorted(queue.done) == [1, 2, 3, 4]
    assert queue.released == []


async def test_a_failed_attempt_hands_back_its_keys_later_records_and_spares_other_keys():
    queue = OnePassQueue(parked((b"a", 1), (b"a", 1), (b"b", 1), (b"b", 1)))

    async def process(rec: ConsumerRecord, attempt: int) -> bool:
        if rec.offset == 1:  # the first of key a
            raise ConnectionError("database away")
        return True

    await run_one_pass(queue, process, concurrency=1)
    assert sorted(queue.done) == [3, 4]
    assert sorted(queue.released) == [1, 2]


async def test_after_an_empty_pass_the_loop_waits_on_the_queue_not_the_poll_interval():
    queue = OnePassQueue(parked((b"a", 1)))
    polls = 0
    due = queue.due

    async def counted_due(consumer: str, limit: int = 100) -> list[Parked]:
        nonlocal polls
        polls += 1
        return await due(consumer, limit)

    queue.due = counted_due  # type: ignore[method-assign]

    async def process(record: ConsumerRecord, attempt: int) -> bool:
        return True

    stopping = asyncio.Event()
    loop = asyncio.create_task(redeliver_parked("p", "g", queue, process, stopping, 0.0))
    await asyncio.wait_for(queue.settled.wait(), 5)
    await asyncio.sleep(0.1)
    stopping.set()
    await loop
    assert polls > 2
    # Every empty pass (all but the first) was followed by one wait on the queue.
    assert queue.idle_waits in (polls - 1, polls - 2)
