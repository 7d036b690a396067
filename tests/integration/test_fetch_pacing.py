"""Fetch pacing on the real broker: a paced consumer's fetches are held while records arrive
fast and answered at once again when they slow down, and every record is polled once."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from events.batches import Poll
from events.consumer import PollLoop
from events.fetch_pacing import FETCH_BATCH_BYTES, FetchPacing
from events.security import kafka_options
from events.settings import Settings
from events.topics import provision_topics
from tests.integration.kafka_helpers import eventually

pytestmark = pytest.mark.integration

RECORDS = 1500


def fetch_min_bytes(poller: PollLoop) -> int:
    consumer = poller._consumer
    assert consumer is not None
    return int(consumer._fetcher._fetch_min_bytes)


async def test_fetches_are_held_while_records_arrive_fast_and_not_after(
    settings: Settings,
) -> None:
    topic = f"{settings.topic_prefix}pacing"
    await provision_topics(settings, [topic])
    polled: list[bytes] = []

    async def process(poll: Poll) -> None:
        for records in poll.values():
            polled.extend(r.value for r in records)
        await poller.delivered({tp: rs[-1].offset + 1 for tp, rs in poll.items()})

    poller = PollLoop(
        name="pacing-test", group_id=f"{settings.topic_prefix}pacing", topics=[topic],
        settings=settings, process=process, max_records=500,
        pacing=FetchPacing(wait_ms=40, above_per_s=200),
    )  # fmt: skip
    await poller.start()
    loop = asyncio.create_task(poller.run())
    producer = AIOKafkaProducer(**kafka_options(settings), linger_ms=5)
    await producer.start()
    try:
        assert poller.arrivals is not None
        assert not poller.arrivals.holding
        assert fetch_min_bytes(poller) == 1
        # About 1,000 records a second for 1.5 s: well above the threshold.
        for batch in range(RECORDS // 50):
            sent = [
                await producer.send(topic, f"r{batch * 50 + i}".encode(), key=b"k")
                for i in range(50)
            ]
            await asyncio.gather(*sent)
            if batch == 10:
                await eventually(
                    lambda: poller.arrivals is not None and poller.arrivals.holding,
                    timeout=10, what="the consumer to hold its fetches",
                )  # fmt: skip
                assert fetch_min_bytes(poller) == FETCH_BATCH_BYTES
            await asyncio.sleep(0.05)
        # Nothing more arrives: the next windows measure 0 records/s.
        await eventually(
            lambda: poller.arrivals is not None and not poller.arrivals.holding,
            timeout=10, what="the consumer to answer at once again",
        )  # fmt: skip
        assert fetch_min_bytes(poller) == 1
        await eventually(lambda: len(polled) >= RECORDS, timeout=10, what="every record")
        assert sorted(polled) == sorted(f"r{i}".encode() for i in range(RECORDS))
    finally:
        await producer.stop()
        await poller.stop()
        await loop
