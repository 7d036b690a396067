"""Circuit breakers on the real database: published by a process, read by the CLI's and the
API's reader, faults injected and applied; and a deferred record kept in the retry queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import ConsumerRecord

from events.breaker_board import (
    BreakerBoard,
    clear_faults,
    inject_fault,
    read_breakers,
    runtime_schema,
)
from events.breakers import BreakerSettings, BreakerState, ProviderGuards
from events.database import Database, schema_name
from events.errors import ProviderUnavailable
from events.retry_queue import PostgresRetryQueue
from events.settings import Settings
from projections.api import create_app
from tests.conftest import ApiTokens
from tests.integration.test_api import serve

pytestmark = pytest.mark.integration

CONFIG = BreakerSettings(failure_threshold=2, cool_down_s=60)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        yield database
        async with database.pool.acquire() as conn:
            for schema in (runtime_schema(settings), schema_name(settings, "payment")):
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def payment_board(db: Database, settings: Settings) -> BreakerBoard:
    guards = ProviderGuards(["gateway"], lambda name: CONFIG)
    board = BreakerBoard(
        db, settings.model_copy(update={"breaker_publish_interval_ms": 50}), "payment", guards
    )
    await board.start()
    return board


async def test_a_process_publishes_its_breakers_and_withdraws_them_when_it_stops(
    db: Database, settings: Settings
):
    assert await read_breakers(db, settings) == []  # no process has published yet
    board = await payment_board(db, settings)
    await board.publish()
    [row] = await read_breakers(db, settings)
    assert (row.process, row.provider, row.state, row.opened, row.stale) == (
        "payment", "gateway", "closed", 0, False,
    )  # fmt: skip
    assert (row.in_use, row.concurrency, row.fault_rate) == (0, CONFIG.concurrency, 0.0)

    breaker = board.guards["gateway"].breaker
    for key in ("m1", "m2"):
        breaker.failed(breaker.admit(key), key, ProviderUnavailable("gateway unavailable"))
    assert breaker.state is BreakerState.OPEN
    await board.publish()
    [row] = await read_breakers(db, settings)
    assert (row.state, row.opened) == ("open", 1)
    assert row.last_error == "ProviderUnavailable: gateway unavailable"
    assert row.to_json()["since"] == breaker.since.isoformat()

    # A process that stops publishing (killed) leaves a row that reads as stale.
    await db.pool.execute(
        f"UPDATE {board.schema}.circuit_breakers SET updated_at = now() - interval '1 minute'"
    )
    [row] = await read_breakers(db, settings)
    assert row.stale

    stopping = asyncio.Event()
    running = asyncio.create_task(board.run(stopping))
    await asyncio.sleep(0.1)
    [row] = await read_breakers(db, settings)
    assert not row.stale  # published again
    stopping.set()
    await running
    assert await read_breakers(db, settings) == []


async def test_an_injected_fault_reaches_the_guard_until_it_ends_or_is_cleared(
    db: Database, settings: Settings
):
    board = await payment_board(db, settings)
    assert await clear_faults(db, settings) == 0
    with pytest.raises(LookupError, match="no running process calls a provider named 'gateway'"):
        await inject_fault(db, settings, "gateway", 1.0, 30)
    await board.publish()  # now the payment process is known to call the gateway
    with pytest.raises(LookupError):
        await inject_fault(db, settings, "carrier", 1.0, 30)
    assert await inject_fault(db, settings, "gateway", 0.5, 30) == ["payment"]
    await board.apply_faults()
    guard = board.guards["gateway"]
    assert guard.fault_rate == 0.5
    await board.publish()
    [row] = await read_breakers(db, settings)
    assert row.fault_rate == 0.5

    assert await clear_faults(db, settings, "gateway") == 1
    await board.apply_faults()
    assert guard.fault_rate == 0.0

    await inject_fault(db, settings, "gateway", 1.0, 0.2)
    await board.apply_faults()
    assert guard.fault_rate == 1.0
    await asyncio.sleep(0.3)  # past its end
    await board.apply_faults()
    assert guard.fault_rate == 0.0


async def test_the_api_lists_the_breakers(db: Database, settings: Settings, api_tokens: ApiTokens):
    board = await payment_board(db, settings)
    await board.publish()
    app = create_app(settings, api_tokens.api)
    async with serve(app, api_tokens.viewer) as client:
        response = await client.get("/breakers")
        assert response.status_code == 200, response.text
        [breaker] = response.json()
        assert breaker["provider"] == "gateway"
        assert breaker["state"] == "closed"
        assert breaker["process"] == "payment"
        assert breaker["instance"] == board.instance
    async with serve(app) as anonymous:
        assert (await anonymous.get("/breakers")).status_code == 401


async def test_a_deferred_record_stays_parked_after_its_redelivery(
    db: Database, settings: Settings
):
    schema = schema_name(settings, "payment")
    await db.migrate(schema)
    queue = PostgresRetryQueue(db, schema)
    record = ConsumerRecord(
        topic="t", partition=0, offset=7, timestamp=0, timestamp_type=0, key=b"ord-1",
        value=b"v", checksum=None, serialized_key_size=-1, serialized_value_size=-1, headers=(),
    )  # fmt: skip
    await queue.park("payment", record, 1, 0, "GatewayUnavailable: down")
    [parked] = await queue.due("payment")
    assert parked.attempts == 1
    # Redelivered as attempt 2, deferred by the open breaker: parked again as attempt 1,
    # due later. Finishing the redelivery must not delete it.
    await queue.park("payment", record, 1, 30, "ProviderDeferred: circuit open")
    await queue.done_unless_reparked(parked)
    assert await queue.size("payment") == 1
    assert await queue.due("payment") == []
    # A redelivery that was not parked again is done.
    await queue.park("payment", record, 1, 0, "GatewayUnavailable: down")
    [parked] = await queue.due("payment")
    await queue.done_unless_reparked(parked)
    assert await queue.size("payment") == 0
