"""A poll delivered in a few transactions: lanes, and the split-and-retry fallback.

With a :class:`~events.delivery.BatchDelivery`, a consumer delivers each poll in one
transaction per *lane*. A record's lane is a hash of its Kafka key (:func:`lane_of`; an
order's messages share its id as key), not its partition number: producers other than
Choreo's may partition a key differently (librdkafka's default hashes it with CRC32, Java
clients with murmur2), so an order's messages can sit on different partition numbers in
different topics. Each lane keeps the poll's records in offset order per partition, and
merges partitions by the records' timestamps, so an order's messages stay in one lane, a
message after the one that caused it (a fast participant's answer can share a poll with
its cause, from another topic), and lanes never share an order: they run concurrently
without reordering anything. More than one lane suits handlers that touch only
their own order's rows, since transactions of different orders then never wait on each other.
Offsets are reported only once every lane of the poll has finished.

When a handler raises, its lane's transaction rolls back and the lane is split around the
culprit (see :meth:`Lanes._deliver_lane`); the culprit takes the retrying path alone. Records
whose provider's circuit breaker is open are parked before a transaction starts
(:mod:`events.breakers`), so an outage costs no rolled-back batches.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from operator import attrgetter

from aiokafka import ConsumerRecord, TopicPartition

from events.delivery import BatchDelivery
from events.dispatch import ConsumerStats, Dispatcher, Pending
from events.interceptors import Attempt, DeliveryInterceptor
from events.retries import RetryingDelivery

log = logging.getLogger("choreo.runtime")

Poll = dict[TopicPartition, list[ConsumerRecord]]


def lane_of(key: bytes | None, lanes: int) -> int:
    """The lane of a record with Kafka key ``key`` among ``lanes``: the same for a key in
    every topic and partition and every process (CRC32, not Python's seeded ``hash``); lane 0
    for records without a key."""
    return 0 if key is None or lanes <= 1 else zlib.crc32(key) % lanes


def assign_lanes(
    poll: Mapping[TopicPartition, Sequence[ConsumerRecord]], lanes: int
) -> list[list[ConsumerRecord]]:
    """The records of ``poll`` by lane (:func:`lane_of` their key), each partition's records
    in offset order within their lane and the partitions merged by timestamp (Kafka orders
    no two partitions; the producers' clocks put a cause before its effect); empty lanes
    left out."""
    by_lane: dict[int, list[ConsumerRecord]] = {}
    for record in heapq.merge(*poll.values(), key=attrgetter("timestamp")):
        by_lane.setdefault(lane_of(record.key, lanes), []).append(record)
    return list(by_lane.values())


class Lanes:
    """Delivers polls in ``lanes`` concurrent transactions of ``delivery``.

    Args:
        name: the process, for log lines.
        group_id: the consumer group, the deliveries' dedupe key.
        delivery: opens the transactions.
        lanes: how many transactions a poll is spread over (at least 1).
        dispatcher: decodes and routes the records.
        single: delivers a record alone, with retries, when its batch cannot commit.
        interceptors: the chain each record's turn in a batch runs in.
        stats: the consumer's counters.
    """

    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        delivery: BatchDelivery,
        lanes: int,
        dispatcher: Dispatcher,
        single: RetryingDelivery,
        interceptors: DeliveryInterceptor,
        stats: ConsumerStats,
    ) -> None:
        self.name = name
        self.group_id = group_id
        self.delivery = delivery
        self.lanes = max(1, lanes)
        self.dispatcher = dispatcher
        self.single = single
        self.interceptors = interceptors
        self.stats = stats

    async def deliver(self, poll: Poll) -> dict[TopicPartition, int]:
        """Deliver every record of ``poll``; returns the offsets now safe to commit."""
        lanes: list[list[Pending]] = []
        for records in assign_lanes(poll, self.lanes):
            items = [await self.dispatcher.prepare(record, attempt=1) for record in records]
            lanes.append([item for item in items if item is not None])
        await asyncio.gather(*(self._deliver_lane(items) for items in lanes if items))
        # Only now is every record of every partition delivered or dead-lettered: a
        # partition's records may have been spread over several lanes.
        return {tp: records[-1].offset + 1 for tp, records in poll.items()}

    async def _deliver_lane(self, pending: list[Pending]) -> None:
        """Deliver ``pending`` (each key's records in offset order) in one transaction.

        When a handler raises, the transaction rolls back: the records before it are
        delivered again as a batch, the failing one alone through the retrying path (park,
        dead-letter, give-up), and the ones after it as the next batch. Handlers are
        idempotent towards the outside world (business keys), as a crash before commit
        already requires.
        """
        while pending:
            pending = await self._defer_refused(pending)
            if not pending:
                break
            failed = await self._deliver_batch(pending)
            if failed is None:
                break
            if failed == len(pending):  # failed outside any handler (e.g. at commit)
                for item in pending:
                    await self.single.deliver(item)
                break
            head, culprit, pending = pending[:failed], pending[failed], pending[failed + 1 :]
            if head and await self._deliver_batch(head) is not None:
                for item in head:
                    await self.single.deliver(item)
            await self.single.deliver(culprit)

    async def _defer_refused(self, pending: list[Pending]) -> list[Pending]:
        """Park the items whose provider's breaker is open (without trying them); the rest."""
        guards = self.dispatcher.guards
        if guards is None or self.single.queue is None:
            return pending
        kept = []
        for item in pending:
            refusal = guards.refusal(item.handler)
            if refusal is None:
                kept.append(item)
            else:
                await self.single.defer(item, refusal)
        return kept

    async def _deliver_batch(self, items: list[Pending]) -> int | None:
        """Deliver ``items`` in one transaction. Returns None when it committed, else the index
        of the item whose handler raised (``len(items)`` if the failure was elsewhere)."""
        started = time.perf_counter()
        attempts = [Attempt(self.group_id, item, 1, batch_size=len(items)) for item in items]
        outcomes: list[bool] = []
        in_handler = False
        try:
            async with self.delivery.batch(self.group_id, [i.message for i in items]) as session:
                for attempt in attempts:
                    turn = functools.partial(
                        session.deliver, attempt.item.message, attempt.item.handler
                    )
                    in_handler = True
                    outcomes.append(await self.interceptors.deliver(attempt, turn))
                    in_handler = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Outside a handler (begin, inbox, staging, commit) no one item is to blame.
            failed = len(outcomes) if in_handler else len(items)
            self.stats.batches_rolled_back += 1
            log.info(
                "%s: batch of %d rolled back at %s: %s: %s",
                self.name,
                len(items),
                f"item {failed}" if in_handler else "the transaction",
                type(exc).__name__,
                exc,
            )
            return failed
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(items)
        for attempt, fresh in zip(attempts, outcomes, strict=True):
            self.stats.delivered(attempt.event_type)
            self.interceptors.delivered(attempt, fresh, elapsed_ms)
        return None
