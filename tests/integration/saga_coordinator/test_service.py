"""The coordinator on the real runtime: transactional delivery, durable timers, Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from events.codec import Codec
from events.model import Event, Message
from events.producer import EventProducer
from events.service import ServiceRuntime
from events.settings import Settings
from events.topics import topic_for
from saga_coordinator.context import CoordinatorContext, CoordinatorSettings
from saga_coordinator.service import build
from saga_coordinator.timers import fire_due_timers
from tests.integration.kafka_helpers import eventually, read_records
from tests.unit.saga_coordinator.flow import T0, message, placed, reserved

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def new_runtime(
    settings: Settings, codec: Codec, clock: Clock
) -> ServiceRuntime[CoordinatorContext]:
    # Without Kafka (and on a test clock) there is no progress to judge deadlines by: what is
    # tested here is that timers are rows that outlive the process and fire. What a delivery
    # stages stays in the outbox (nothing publishes it) for the test to take.
    coordinator = CoordinatorSettings(timer_poll_interval_ms=20, timer_fair=False)
    service = build(settings, coordinator, clock=clock)
    settings = settings.model_copy(update={"outbox_publish_after_commit": False})
    return ServiceRuntime(service, settings, codec)


@contextlib.asynccontextmanager
async def started_db(runtime: ServiceRuntime[CoordinatorContext]) -> AsyncIterator[None]:
    """The runtime's database and migrations, without Kafka."""
    await runtime.db.start()
    try:
        await runtime.db.migrate(runtime.schema, *runtime.service.ddl)
        yield
    finally:
        await runtime.db.stop()


@pytest.fixture
async def cleanup(settings: Settings, codec: Codec) -> AsyncIterator[None]:
    yield
    runtime = new_runtime(settings, codec, Clock())
    async with started_db(runtime):
        await runtime.db.pool.execute(f"DROP SCHEMA IF EXISTS {runtime.schema} CASCADE")


async def deliver(runtime: ServiceRuntime[CoordinatorContext], msg: Message[Event]) -> None:
    spec = runtime.service.router.get(msg.envelope.event_type)
    assert spec is not None
    await runtime.delivery.deliver(runtime.consumer.group_id, msg, spec)


async def take_outbox(runtime: ServiceRuntime[CoordinatorContext]) -> list[Message[Event]]:
    rows = await runtime.db.pool.fetch(f"DELETE FROM {runtime.schema}.outbox RETURNING id, value")
    return [runtime.codec.decode(bytes(r["value"])) for r in sorted(rows, key=lambda r: r["id"])]


async def test_each_message_is_decided_once_with_facts_timers_and_outbox_together(
    settings: Settings, codec: Codec, cleanup: None
):
    runtime = new_runtime(settings, codec, Clock())
    async with started_db(runtime):
        await deliver(runtime, message(placed()))
        reservation = message(reserved())
        await deliver(runtime, reservation)
        [approval] = await take_outbox(runtime)
        assert approval.envelope.event_type == "order.approved"
        assert approval.envelope.producer == "saga-coordinator"
        assert approval.envelope.correlation_id == "corr-1"
        assert approval.envelope.causation_id == str(reservation.envelope.event_id)

        await deliver(runtime, reservation)  # redelivered by Kafka
        assert runtime.delivery.duplicates == 1
        assert await take_outbox(runtime) == []
        pool = runtime.db.pool
        kinds = await pool.fetch(
            f"SELECT kind FROM {runtime.schema}.saga_events WHERE order_id = 'ord-1' ORDER BY seq"
        )
        assert [k["kind"] for k in kinds] == ["saga.started", "step.succeeded", "task.decided"]
        timers = await pool.fetch(f"SELECT order_id, name FROM {runtime.schema}.saga_timers")
        assert [(t["order_id"], t["name"]) for t in timers] == [("ord-1", "deadline:payment")]


async def test_timers_survive_a_restart_and_the_timer_loop_fires_them(
    settings: Settings, codec: Codec, cleanup: None
):
    clock = Clock()
    before = new_runtime(settings, codec, clock)
    async with started_db(before):
        last = message(reserved())
        await deliver(before, message(placed()))
        await deliver(before, last)
        await take_outbox(before)
        clock.now = T0 + timedelta(seconds=29)
        assert await fire_due_timers(before, limit=10) == 0

    # A new process: nothing in memory, the timer is a row.
    clock.now = T0 + timedelta(seconds=31)
    after = new_runtime(settings, codec, clock)
    async with started_db(after):
        [loop] = [task for task in after.service.background if task.__name__ == "timer_loop"]
        task = asyncio.create_task(loop(after))
        try:
            fired: list[Message[Event]] = []

            async def poll() -> None:
                fired.extend(await take_outbox(after))

            for _ in range(100):
                await poll()
                if fired:
                    break
                await asyncio.sleep(0.05)
        finally:
            await after.stop()
            await asyncio.wait_for(task, 5)
        [release] = fired
        assert release.envelope.event_type == "inventory.release"
        assert release.envelope.correlation_id == "corr-1"
        assert release.envelope.causation_id == str(last.envelope.event_id)
        timers = await after.db.pool.fetch(f"SELECT name, due_at FROM {after.schema}.saga_timers")
        assert [(t["name"], t["due_at"]) for t in timers] == [
            ("ack:inventory.release", clock.now + timedelta(seconds=10))
        ]


async def test_the_coordinator_answers_on_kafka(
    settings: Settings, codec: Codec, producer: EventProducer, cleanup: None
):
    runtime = ServiceRuntime(build(settings, CoordinatorSettings()), settings, codec)
    await runtime.start()
    task = asyncio.create_task(runtime.run())
    try:
        await producer.publish(
            [message(placed(), order_id="ord-k"), message(reserved(), order_id="ord-k")]
        )
        # Its own order.approved comes back too (it listens to the order topic): >= 2.
        await eventually(lambda: runtime.consumer.stats.processed >= 2, what="two messages handled")
        records = await read_records(settings, [topic_for("order.approved", settings)], 2)
    finally:
        await runtime.stop()
        await task
        await runtime.close()
    decoded = [codec.decode(r.value) for r in records]
    assert sorted(m.envelope.event_type for m in decoded) == ["order.approved", "order.placed"]
    [approval] = [m for m in decoded if m.envelope.event_type == "order.approved"]
    assert approval.envelope.producer == "saga-coordinator"
    assert approval.saga_key == "ord-k"
