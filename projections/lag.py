"""Consumer lag per consumer group, from the broker: its committed offsets against the
partitions' end offsets.

Every Choreo process consumes as the group ``<prefix><name>``
(:meth:`~events.process.ProcessSpec.group`) and commits its offsets to Kafka (the projector
too, after its PostgreSQL commit), so the broker alone tells how far each is behind. The
groups of a deployment are the broker's groups named ``<prefix><name>`` with no further dot.
A read is reused for :data:`LAG_TTL_S` (the overview polls it); the admin client and the
consumer asking for end offsets start on first use, inside the running event loop (aiokafka
requires it), and :meth:`ConsumerLag.close` stops them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.security import kafka_options
from events.settings import Settings

LAG_TTL_S = 3.0
"""How long a read of the groups' lag is reused."""
LAG_TIMEOUT_S = 5.0
"""How long a read may take before the broker counts as unreachable (the page says so)."""


class ConsumerLag:
    """The lag of the consumer groups of ``settings``'s deployment."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._read: tuple[float, list[dict[str, Any]]] | None = None

    def owns(self, group: str) -> bool:
        """Whether ``group`` is one of this deployment's: ``<prefix><process name>``."""
        prefix = self.settings.topic_prefix
        return group.startswith(prefix) and "." not in group[len(prefix) :]

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**kafka_options(self.settings))
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**kafka_options(self.settings), enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def groups(self) -> list[dict[str, Any]]:
        """Each group of the deployment with committed offsets, by name: ``group`` (the
        process name), ``partitions``, ``committed`` and ``end`` (summed over its
        partitions) and ``lag``; the most behind first.

        Raises:
            TimeoutError: the broker did not answer within :data:`LAG_TIMEOUT_S`.
            KafkaError: the broker refused a request.
        """
        async with self._lock:  # concurrent polls share one read
            now = time.monotonic()
            if self._read is None or now - self._read[0] > LAG_TTL_S:
                try:
                    async with asyncio.timeout(LAG_TIMEOUT_S):
                        measured = await self._measure()
                except BaseException:
                    await self.close()  # a client cut off mid-request starts afresh next time
                    raise
                self._read = (now, measured)
            return self._read[1]

    async def _measure(self) -> list[dict[str, Any]]:
        admin, consumer = await self._clients()
        names = sorted(g for g, _ in await admin.list_consumer_groups() if self.owns(g))
        committed = await asyncio.gather(*(admin.list_consumer_group_offsets(g) for g in names))
        positions: dict[str, dict[TopicPartition, int]] = {
            name: {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
            for name, offsets in zip(names, committed, strict=True)
        }
        partitions = sorted({tp for found in positions.values() for tp in found})
        ends: dict[TopicPartition, int] = (
            await consumer.end_offsets(partitions) if partitions else {}
        )
        found = []
        for name, offsets in positions.items():
            if not offsets:
                continue
            found.append(
                {
                    "group": name[len(self.settings.topic_prefix) :],
                    "partitions": len(offsets),
                    "committed": sum(offsets.values()),
                    "end": sum(ends[tp] for tp in offsets),
                    "lag": sum(max(0, ends[tp] - at) for tp, at in offsets.items()),
                }
            )
        return sorted(found, key=lambda g: (-g["lag"], g["group"]))

    async def close(self) -> None:
        """Stop the clients, if started (idempotent)."""
        admin, self._admin = self._admin, None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()
