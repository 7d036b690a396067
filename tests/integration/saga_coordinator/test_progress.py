"""The coordinator's progress sampler against the real broker: what it reads, and that it asks
each group's coordinator directly instead of looking it up before every request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from events.security import kafka_options
from events.settings import Settings
from saga_coordinator.progress import ProgressLog, ProgressSampler

pytestmark = pytest.mark.integration


@pytest.fixture
async def member(settings: Settings, topics: list[str]) -> AsyncIterator[str]:
    """A consumer group with a running member that committed offset 7 on partition 0 of the
    first topic; its name."""
    group = f"{settings.topic_prefix}member"
    consumer = AIOKafkaConsumer(
        topics[0], **kafka_options(settings), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=1000)  # joined: the group is Stable with a member
        await consumer.commit({TopicPartition(topics[0], 0): OffsetAndMetadata(7, "")})
        yield group
    finally:
        await consumer.stop()


async def test_samples_read_offsets_and_liveness_asking_coordinators_once(
    settings: Settings, topics: list[str], member: str, monkeypatch: pytest.MonkeyPatch
):
    lookups: list[str] = []
    find_coordinator = AIOKafkaAdminClient.find_coordinator

    async def counted(self: AIOKafkaAdminClient, group_id: str, *args: Any) -> int:
        lookups.append(group_id)
        return await find_coordinator(self, group_id, *args)

    monkeypatch.setattr(AIOKafkaAdminClient, "find_coordinator", counted)
    idle = f"{settings.topic_prefix}never-joined"
    sampler = ProgressSampler(
        settings,
        topics=topics[:1],
        groups=[member, idle],
        progress=ProgressLog(keep=timedelta(minutes=5), stale=timedelta(minutes=5)),
        clock=lambda: datetime.now(UTC),
    )
    try:
        samples = [await sampler.sample() for _ in range(3)]
    finally:
        await sampler.close()

    for sample in samples:
        assert sample.committed[member][(topics[0], 0)] == 7
        assert sample.committed[idle] == {}
        assert sample.live == frozenset({member})
        assert set(sample.ends) == {(topics[0], p) for p in range(settings.topic_partitions)}
    assert sorted(lookups) == sorted([member, idle])  # once each, not per request and sample
