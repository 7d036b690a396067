"""The simulated gateway's call count in PostgreSQL: replicas of payment count into one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from events.database import Database, schema_name
from events.settings import Settings
from services.payment.gateway_calls import DDL, PostgresGatewayCalls

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        yield database
        await database.pool.execute(
            f"DROP SCHEMA IF EXISTS {schema_name(settings, 'gateway_calls')} CASCADE"
        )


async def test_replicas_number_the_calls_of_a_key_once_between_them(
    settings: Settings, db: Database
):
    schema = schema_name(settings, "gateway_calls")
    await db.migrate(schema, DDL)
    replicas = [PostgresGatewayCalls() for _ in range(2)]
    for replica in replicas:
        replica.attach(db, schema)

    numbers = await asyncio.gather(*(replicas[i % 2].count("ord-1") for i in range(10)))
    assert sorted(numbers) == list(range(1, 11))  # each call its own number, none twice
    assert await replicas[1].count("ord-2") == 1  # per key


async def test_counting_before_the_process_started_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before the process started"):
        await PostgresGatewayCalls().count("ord-1")
