"""A chaos run's orders: placed at a rate, their approvals answered, their endings seen.

Placing goes on through the faults: a publish that fails (a broker down) is retried with the
same order id, as a client would, until it is acknowledged. The follower reads the order topic
without a consumer group from where it was when the run began: it approves each of the run's
orders that asks for approval, at once (a person who always answers: an approval that times
out is then the platform's doing), and notes each one's terminal (or needs-attention) event,
which is how the run knows how far along it is without asking PostgreSQL (the invariants read
the tables later).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from choreo.client import ChoreoClient, new_order_id
from contracts.samples import scenario_order
from events.headers import EVENT_TYPE, header
from events.security import kafka_options
from events.settings import Settings
from events.topics import partitions_of, topic_for

APPROVER = "chaos"
RETRY_S = 1.0
SETTLED = ("order.completed", "order.cancelled", "order.needs_attention")
"""Events after which an order does nothing more by itself: it ended, or waits for an operator
(which the invariants report: not terminal)."""


@dataclass(frozen=True)
class PlacedOrder:
    """One order the run placed, and its scenario (what its participants will answer)."""

    order_id: str
    scenario: str


async def _publish(client: ChoreoClient, order: PlacedOrder) -> None:
    while True:
        try:
            await client.place_order(scenario_order(order.scenario), order.order_id)
            return
        except Exception:  # a broker down: try again, as a client would
            await asyncio.sleep(RETRY_S)


async def place_all(
    client: ChoreoClient,
    scenarios: list[str],
    rate: float,
    placed: list[PlacedOrder],
    on_placed: Callable[[int], None],
    ours: set[str],
    in_flight: int = 200,
) -> None:
    """Place one order per scenario at ``rate`` per second, appending each to ``placed``
    once acknowledged (and its id to ``ours`` before it is published: the approver's set);
    at most ``in_flight`` publishes wait at once."""
    gate = asyncio.Semaphore(in_flight)
    started = time.monotonic()

    async def one(order: PlacedOrder) -> None:
        ours.add(order.order_id)
        try:
            await _publish(client, order)
            placed.append(order)
            on_placed(len(placed))
        finally:
            gate.release()

    tasks = []
    for i, scenario in enumerate(scenarios):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        tasks.append(asyncio.create_task(one(PlacedOrder(new_order_id(), scenario))))
    await asyncio.gather(*tasks)


@dataclass
class OrderFollower:
    """Approves the run's orders that ask for approval and notes which ended (see the module
    docstring)."""

    settings: Settings
    client: ChoreoClient
    ours: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    approved: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin following the order topic from its current end."""
        topic = topic_for("order.placed", self.settings)
        self._consumer = AIOKafkaConsumer(**kafka_options(self.settings), enable_auto_commit=False)
        await self._consumer.start()
        partitions = await partitions_of(self.settings, [topic])
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, before any order is placed
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop following. Safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batch.values():
                for record in records:
                    event_type = header(record.headers, EVENT_TYPE)
                    key = record.key.decode(errors="replace") if record.key else ""
                    if key not in self.ours:
                        continue
                    if event_type == "order.approval_requested":
                        await self._approve(key)
                    elif event_type in SETTLED:
                        self.ended.add(key)

    async def _approve(self, order_id: str) -> None:
        while True:
            try:
                await self.client.approve(order_id, by=APPROVER, reason="approved by choreo chaos")
                self.approved += 1
                return
            except Exception:  # a broker down: try again
                await asyncio.sleep(RETRY_S)
