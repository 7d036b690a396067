"""The simulated gateway's call count in PostgreSQL: replicas of payment count into one."""

from __future__ import annotations

import asyncio

import pytest

from services.payment.gateway_calls import DDL, PostgresGatewayCalls
from tests.integration.conftest import Scratch

pytestmark = pytest.mark.integration


async def test_replicas_number_the_calls_of_a_key_once_between_them(scratch: Scratch):
    await scratch.db.migrate(scratch.schema, DDL)
    replicas = [PostgresGatewayCalls() for _ in range(2)]
    for replica in replicas:
        replica.attach(scratch.db, scratch.schema)

    numbers = await asyncio.gather(*(replicas[i % 2].count("ord-1") for i in range(10)))
    assert sorted(numbers) == list(range(1, 11))  # each call its own number, none twice
    assert await replicas[1].count("ord-2") == 1  # per key


async def test_counting_before_the_process_started_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before the process started"):
        await PostgresGatewayCalls().count("ord-1")
