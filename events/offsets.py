"""Kafka offset commits: throttled, and flushed when a rebalance takes partitions away.

Every consumer commits manually, and only offsets of records already delivered (or, for the
projector, checkpointed in PostgreSQL). :class:`OffsetCommits` holds them and commits at most
every ``interval_ms``; :class:`CommitOnRevoke` commits a revoked partition's pending offset
before the partition moves to another member, as aiokafka recommends for manual commits, so
the new owner does not redeliver what this member already delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from typing import Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

log = logging.getLogger("choreo.runtime")


class Committer(Protocol):
    """What commits need of a consumer (an ``AIOKafkaConsumer``)."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...


class OffsetCommits:
    """Offsets waiting to be committed to Kafka, committed at most every ``interval_ms``.

    Committing every small batch cost the broker and every consumer a round trip per poll;
    committing a little later only widens what a crash redelivers, which the deliveries'
    dedupe (or the projector's checkpoints) absorbs.
    """

    def __init__(self, name: str, interval_ms: int, *, failure_level: int = logging.WARNING):
        self.name = name
        self.interval_ms = interval_ms
        self.failure_level = failure_level
        self._pending: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        # Flushes come from the poll loop, a timer and the rebalance listener: one at a time,
        # so an older offset is never committed after a newer one.
        self._lock = asyncio.Lock()

    def add(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._pending.update(offsets)

    async def flush(self, consumer: Committer | None, *, force: bool = False) -> None:
        """Commit what is pending if the interval has passed (or ``force``)."""
        elapsed_ms = (time.monotonic() - self._committed_at) * 1000
        if not self._pending or (not force and elapsed_ms < self.interval_ms):
            return
        assert consumer is not None, "offsets are pending, so the consumer has started"
        offsets, self._pending = self._pending, {}
        self._committed_at = time.monotonic()
        await self._commit(consumer, offsets)

    async def flush_partitions(
        self, consumer: Committer, partitions: Collection[TopicPartition]
    ) -> None:
        """Commit now what is pending for ``partitions`` (the others wait for the interval)."""
        offsets = {tp: self._pending.pop(tp) for tp in partitions if tp in self._pending}
        if offsets:
            await self._commit(consumer, offsets)

    async def _commit(self, consumer: Committer, offsets: dict[TopicPartition, int]) -> None:
        try:
            async with self._lock:
                await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partition moved to another member; it re-reads from the last commit.
            log.log(self.failure_level, "%s could not commit %s: %s", self.name, offsets, exc)


class CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Rebalance listener: commit the pending offsets of revoked partitions before they go.

    aiokafka calls it before the group rejoins; without it, whatever a member delivered
    since its last (throttled) commit would be delivered again by the partition's next owner.
    """

    def __init__(self, commits: OffsetCommits, consumer: Committer) -> None:
        self.commits = commits
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self.commits.flush_partitions(self.consumer, revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Nothing to load: positions come from the group's commits. Logged, since with
        replicas it tells which instance has which partitions."""
        log.info(
            "%s assigned %d partitions: %s",
            self.commits.name,
            len(assigned),
            ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(assigned)) or "none",
        )
