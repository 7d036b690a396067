"""Helpers for integration tests on the real broker: reading topics, waiting, a failing producer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaTimeoutError

from events.producer import EventProducer, OutgoingRecord
from events.security import kafka_options
from events.settings import Settings


async def read_records(
    settings: Settings, topics: list[str], count: int, timeout: float = 30.0
) -> list[ConsumerRecord]:
    """Read exactly ``count`` records from the start of ``topics`` (no consumer group)."""
    consumer = AIOKafkaConsumer(
        *topics,
        **kafka_options(settings),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
        # A short extra poll: more than `count` records would be a bug the caller should see.
        batch = await consumer.getmany(timeout_ms=300)
        for part in batch.values():
            records.extend(part)
    finally:
        await consumer.stop()
    got = sorted(
        f"{(r.key or b'').decode()}:{dict(r.headers or ()).get('event_type', b'?').decode()}"
        for r in records
    )
    assert len(records) == count, f"expected {count} records on {topics}, got {len(got)}: {got}"
    return records


async def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Wait until ``check()`` holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


class FailingOnce:
    """A producer whose first send fails as a broker away for longer than its timeout."""

    def __init__(self, producer: EventProducer) -> None:
        self.producer = producer
        self.failures = 0

    async def send_records(self, records: Sequence[OutgoingRecord]) -> None:
        if not self.failures:
            self.failures += 1
            raise KafkaTimeoutError("the broker did not answer in time")
        await self.producer.send_records(records)
