"""A batch of malformed values on a service's topic, on the real stack: the inventory service
(its real runtime: batch transactions on PostgreSQL, lanes, outbox) dead-letters every one with
its reason and bytes, and reserves the valid order queued behind them on the same partition.

The values are drawn by Hypothesis from every kind of damage (tests/strategies.py: arbitrary
bytes, truncated and bit-flipped frames, another schema's fingerprint, schema-valid records that
break the model) plus valid events of other types under an ``order.placed`` header; drawn
deterministically, so a run on the real stack is repeatable (the unit fuzz tests explore).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest
from hypothesis import Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from contracts.samples import EXAMPLES, sample_order_placed
from events.codec import Codec
from events.database import Database, schema_name
from events.dlq import DeadLetter
from events.model import Message
from events.producer import EventProducer, OutgoingRecord
from events.schemas import SchemaRegistry
from events.service import ServiceRuntime
from events.settings import Settings
from events.topics import topic_for
from services.inventory.service import build as build_inventory
from tests.integration.kafka_helpers import read_records
from tests.strategies import malformed_values

pytestmark = pytest.mark.integration

T = TypeVar("T")
KEY = b"ord-fuzz"
BATCH = 16
"""Malformed values per run: every kind of damage, in seconds."""


def draw(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """``count`` values of ``strategy``, the same on every run."""
    drawn: list[T] = []

    @given(strategy)
    @hypothesis_settings(
        max_examples=count, derandomize=True, database=None, phases=[Phase.generate]
    )
    def collect(value: T) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


@pytest.fixture
async def inventory(settings: Settings, codec: Codec, topics: list[str]) -> AsyncIterator[None]:
    """The inventory service, running."""
    runtime = ServiceRuntime(build_inventory(settings), settings, codec)
    await runtime.start()
    task = asyncio.create_task(runtime.run())
    try:
        yield
    finally:
        await runtime.stop()
        await task
        await runtime.close()
        async with Database(settings) as db:
            await db.pool.execute(
                f"DROP SCHEMA IF EXISTS {schema_name(settings, 'inventory')} CASCADE"
            )


async def test_every_malformed_value_is_dead_lettered_and_the_partition_moves_on(
    settings: Settings,
    codec: Codec,
    registry: SchemaRegistry,
    producer: EventProducer,
    inventory: None,
):
    topic = topic_for("order.placed", settings)
    damaged = draw(malformed_values(codec, registry), BATCH)
    # Valid events of other types, sent as if they were orders: the header would route them to
    # the inventory's order.placed handler.
    mislabelled = [
        codec.encode(
            Message.first(EXAMPLES[t], saga_type="order", saga_key="ord-fuzz", producer="fuzz")
        )
        for t in ("payment.charged", "order.approved")
    ]
    bad = damaged + mislabelled
    header = (("event_type", b"order.placed"),)
    await producer.send_records([OutgoingRecord(topic, KEY, value, header) for value in bad])
    valid = Message.first(
        sample_order_placed(), saga_type="order", saga_key=KEY.decode(), producer="fuzz"
    )
    await producer.publish([valid])

    [reserved] = await read_records(settings, [topic_for("inventory.reserved", settings)], 1)
    assert reserved.key == KEY
    records = await read_records(settings, [settings.dlq_topic], len(bad))
    letters = sorted(
        (DeadLetter.from_json(r.value) for r in records), key=lambda d: d.source_offset
    )
    assert [d.original_value for d in letters] == bad  # each one, byte for byte, in order
    for letter in letters:
        assert letter.reason.strip(), letter
        assert letter.error_type in {
            "DecodeError", "UnknownSchemaError", "ValidationError", "HeaderMismatchError",
        }  # fmt: skip
        assert (letter.source_topic, letter.original_key) == (topic, KEY)
        assert letter.consumer == f"{settings.topic_prefix}inventory"
    assert {d.error_type for d in letters[-2:]} == {"HeaderMismatchError"}
    kinds = {d.error_type for d in letters}
    assert {"DecodeError", "ValidationError"} <= kinds, kinds
