"""A chaos run's orders: placed at a rate, their approvals answered, their endings seen.

Placing goes on through the faults: a publish that fails (a broker down) is retried with the
same order id, as a client would, until it is acknowledged. The follower reads the order topic
without a consumer group from where it was when the run began: it approves each of the run's
orders that asks for approval, at once (a person who always answers: an approval that times
out is then the platform's doing), and notes each one's terminal (or needs-attention) event,
which is how the run knows how far along it is without asking PostgreSQL (the invariants read
the tables later). It also asks for the run's returns as their orders settle, approves those
that ask for approval and notes their endings on the return topic (:mod:`choreo.chaos.returns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from choreo.chaos.returns import RETURN_SAGA, PlacedReturn, ReturnPlan, approve_return
from choreo.chaos.returns import SETTLED as RETURN_SETTLED
from choreo.client import ChoreoClient, new_key, new_order_id
from contracts.return_samples import scenario_return
from contracts.samples import scenario_order
from events.headers import EVENT_TYPE, header
from events.security import kafka_options
from events.settings import Settings
from events.topics import partitions_of, topic_for

APPROVER = "chaos"
REASON = "approved by choreo chaos"
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
    order_placed = scenario_order(order.scenario)
    await _until_published(lambda: client.place_order(order_placed, order.order_id))


async def place_all(
    client: ChoreoClient,
    scenarios: list[str],
    rate: float,
    placed: list[PlacedOrder],
    on_placed: Callable[[int], None],
    ours: dict[str, str],
    in_flight: int = 200,
) -> None:
    """Place one order per scenario at ``rate`` per second, appending each to ``placed``
    once acknowledged (and its id and scenario to ``ours`` before it is published, for the
    follower); at most ``in_flight`` publishes wait at once."""
    gate = asyncio.Semaphore(in_flight)
    started = time.monotonic()

    async def one(order: PlacedOrder) -> None:
        ours[order.order_id] = order.scenario
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
    """Approves the run's orders and returns that ask for approval, asks for the returns and
    notes which ended (see the module docstring)."""

    settings: Settings
    client: ChoreoClient
    plan: ReturnPlan = field(default_factory=lambda: ReturnPlan(0))
    ours: dict[str, str] = field(default_factory=dict)
    """The run's order ids and their scenarios."""
    ended: set[str] = field(default_factory=set)
    returns: list[PlacedReturn] = field(default_factory=list)
    returns_ended: set[str] = field(default_factory=set)
    approved: int = 0
    _asked: set[str] = field(default_factory=set)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin following the order and return topics from their current ends."""
        topics = [topic_for("order.placed", self.settings)]
        if self.plan.percent:
            topics.append(topic_for("return.requested", self.settings))
        self._consumer = AIOKafkaConsumer(**kafka_options(self.settings), enable_auto_commit=False)
        await self._consumer.start()
        partitions = await partitions_of(self.settings, topics)
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

    def settled(self) -> bool:
        """Whether every order and return of the run so far has settled."""
        return self.ours.keys() <= self.ended and self._asked <= self.returns_ended

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batch.values():
                for record in records:
                    event_type = header(record.headers, EVENT_TYPE)
                    key = record.key.decode(errors="replace") if record.key else ""
                    if key in self.ours:
                        await self._on_order(key, event_type)
                    elif key in self._asked:
                        await self._on_return(key, event_type)

    async def _on_order(self, order_id: str, event_type: str | None) -> None:
        if event_type == "order.approval_requested":
            await self._approve(order_id)
        elif event_type in SETTLED and order_id not in self.ended:  # not a re-sent ending
            self.ended.add(order_id)
            scenario = self.plan.scenario_for(order_id, self.ours[order_id], event_type)
            if scenario is not None:
                # Listed before it is published: the run is not quiet until it settles.
                placed = PlacedReturn(new_key(RETURN_SAGA), order_id, scenario)
                self.returns.append(placed)
                self._asked.add(placed.return_id)
                requested = scenario_return(scenario, order_id)
                await _until_published(
                    lambda: self.client.start_saga(RETURN_SAGA, requested, placed.return_id)
                )

    async def _on_return(self, return_id: str, event_type: str | None) -> None:
        if event_type == "return.approval_requested":
            approved = approve_return(APPROVER, REASON)
            await _until_published(lambda: self.client.answer(RETURN_SAGA, return_id, approved))
            self.approved += 1
        elif event_type in RETURN_SETTLED:
            self.returns_ended.add(return_id)

    async def _approve(self, order_id: str) -> None:
        await _until_published(lambda: self.client.approve(order_id, by=APPROVER, reason=REASON))
        self.approved += 1


async def _until_published(publish: Callable[[], Awaitable[object]]) -> None:
    """Call ``publish`` until it succeeds (a broker down: try again, as a client would)."""
    while True:
        try:
            await publish()
            return
        except Exception:
            await asyncio.sleep(RETRY_S)
