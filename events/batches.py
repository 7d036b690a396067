"""A poll delivered in a few transactions: lanes, and the split-and-retry fallback.

With a :class:`~events.delivery.BatchDelivery`, a consumer delivers each poll in one
transaction per *lane*. A lane is the partitions of one partition number across the topics;
an order's messages share a key, hence a partition number, so lanes never share an order and
run concurrently without reordering anything. More than one lane suits handlers that touch
only their own order's rows, since transactions of different orders then never wait on each
other.

When a handler raises, its lane's transaction rolls back and the lane is split around the
culprit (see :meth:`Lanes._deliver_lane`); the culprit takes the retrying path alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from aiokafka import ConsumerRecord, TopicPartition

from events.delivery import BatchDelivery
from events.dispatch import ConsumerStats, Dispatcher, Pending
from events.interceptors import Attempt, DeliveryInterceptor
from events.retries import RetryingDelivery

log = logging.getLogger("choreo.runtime")

Poll = dict[TopicPartition, list[ConsumerRecord]]


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
        lanes: dict[int, list[Pending]] = {}
        for tp, records in poll.items():
            lane = lanes.setdefault(tp.partition % self.lanes, [])
            for record in records:
                item = await self.dispatcher.prepare(record, attempt=1)
                if item is not None:
                    lane.append(item)
        await asyncio.gather(*(self._deliver_lane(items) for items in lanes.values()))
        return {tp: records[-1].offset + 1 for tp, records in poll.items()}

    async def _deliver_lane(self, pending: list[Pending]) -> None:
        """Deliver ``pending`` (each partition's records in offset order) in one transaction.

        When a handler raises, the transaction rolls back: the records before it are
        delivered again as a batch, the failing one alone through the retrying path (park,
        dead-letter, give-up), and the ones after it as the next batch. Handlers are
        idempotent towards the outside world (business keys), as a crash before commit
        already requires.
        """
        while pending:
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
