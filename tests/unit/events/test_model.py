"""The clock handlers read: real by default, frozen per delivery and per replayed message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from events.model import frozen_clock, utc_now


def test_the_clock_is_utc_with_milliseconds():
    now = utc_now()
    assert now.tzinfo is UTC
    assert now.microsecond % 1000 == 0


def test_a_frozen_clock_holds_one_instant_until_the_block_ends():
    at = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    with frozen_clock(at) as frozen:
        assert frozen == at.replace(microsecond=678_000)
        assert utc_now() == utc_now() == frozen
        with frozen_clock() as inner:  # a delivery inside a replay keeps the replay's instant
            assert inner == frozen
        with frozen_clock(at + timedelta(seconds=1)):
            assert utc_now() == frozen + timedelta(seconds=1)
        assert utc_now() == frozen
    assert utc_now() > at


def test_a_frozen_instant_is_normalized_to_utc():
    berlin = timezone(timedelta(hours=1))
    with frozen_clock(datetime(2026, 1, 1, 13, 0, tzinfo=berlin)) as frozen:
        assert frozen == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        assert frozen.tzinfo is UTC


async def test_concurrent_tasks_each_have_their_own_clock():
    async def frozen_at(seconds: int) -> datetime:
        with frozen_clock(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)):
            await asyncio.sleep(0.01)
            return utc_now()

    first, second = await asyncio.gather(frozen_at(1), frozen_at(2))
    assert (second - first) == timedelta(seconds=1)
