"""Read models on the real stack: live equals rebuild, queries during a rebuild, crash resume,
time travel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from choreo.roles import as_process
from events.topics import event_topics, read_to_end
from projections.queries import Queries
from projections.rebuild import rebuild
from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration

MIX = ["happy", "declined", "unshippable", "out_of_stock", "bounce", "flaky"]


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    # Small batches, so that a kill is likely to land in the middle of the projector's work.
    async for d in start_deployment({"CHOREO_CONSUMER_BATCH_SIZE": "20"}, "projections"):
        yield d


async def _caught_up(checked: Deployment, timeout: float = 60) -> Queries:
    """The projector has projected everything on the topics."""
    queries = Queries(checked.db, checked.settings)
    deadline = time.monotonic() + timeout
    while True:
        if await queries.ready() and (await queries.projection_status())["total_lag"] == 0:
            return queries
        if time.monotonic() > deadline:
            raise AssertionError(
                "projector did not catch up\n" + checked.platform.tail("projector")
            )
        await asyncio.sleep(0.2)


async def _place_and_finish(checked: Deployment, scenarios: list[str]) -> list[str]:
    orders = [await checked.place(s) for s in scenarios]
    for order_id in orders:
        await checked.wait_for(order_id)
    return orders


async def test_live_projection_equals_a_rebuild(checked: Deployment):
    orders = await _place_and_finish(checked, MIX * 2)
    queries = await _caught_up(checked)
    for order_id in orders:
        row = await queries.status(order_id)
        saga = await checked.saga(order_id)
        assert row is not None
        assert (row["status"], row["cancel_reason"]) == (saga.status, saga.cancel_reason)
    # In one lane, then in three (this process and two workers, a partition number each).
    one_lane = await rebuild(as_process(checked.settings, "projector"), verify=True, workers=1)
    assert one_lane.differences == []
    assert one_lane.sagas >= len(orders)
    lanes = await rebuild(as_process(checked.settings, "projector"), verify=True, workers=3)
    assert lanes.differences == []
    assert (lanes.events, lanes.sagas) == (one_lane.events, one_lane.sagas)
    history = await queries.history(orders[0])
    assert history[0]["event_type"] == "order.placed"
    assert history[-1]["event_type"] == "order.completed"


async def test_queries_answer_throughout_a_rebuild_under_live_traffic(checked: Deployment):
    known = await _place_and_finish(checked, ["happy"] * 10)
    queries = await _caught_up(checked)
    answered: list[float] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def keep_querying() -> None:
        while not stop.is_set():
            try:
                row = await queries.status(known[0])
                assert row is not None
                assert row["status"] == "completed"
                listed = await queries.orders(limit=5)
                assert listed
                answered.append(time.monotonic())
            except Exception as exc:  # every failure is reported by the assertion below
                failures.append(repr(exc))
            await asyncio.sleep(0.02)

    async def live_traffic() -> list[str]:
        placed = []
        for _ in range(10):
            placed.append(await checked.place("happy"))
            await asyncio.sleep(0.05)
        return placed

    reader = asyncio.create_task(keep_querying())
    traffic = asyncio.create_task(live_traffic())
    started = time.monotonic()
    report = await rebuild(as_process(checked.settings, "projector"))
    finished = time.monotonic()
    placed = await traffic
    stop.set()
    await reader
    assert failures == []
    during = [t for t in answered if started <= t <= finished]
    assert len(during) >= 3, f"{len(during)} answers during a {finished - started:.2f}s rebuild"
    assert report.events > 0
    for order_id in placed:
        await checked.wait_for(order_id)
    await _caught_up(checked)
    # The orders placed during the rebuild are in the swapped-in tables, consistently.
    assert (await rebuild(as_process(checked.settings, "projector"), verify=True)).differences == []
    for order_id in placed:
        row = await queries.status(order_id)
        assert row is not None
        assert row["status"] == "completed"


async def test_projector_killed_mid_batch_resumes_without_gap_or_duplicate(checked: Deployment):
    await checked.platform.kill("projector")
    orders = [await checked.place(s) for s in MIX * 5]
    for order_id in orders:
        await checked.wait_for(order_id)
    # Restart it with a backlog and kill it again while it works through it.
    await checked.platform.start("projector")
    queries = Queries(checked.db, checked.settings)
    deadline = time.monotonic() + 30
    while (await queries.projection_status())["total_lag"] > 0 and time.monotonic() < deadline:
        before = (await queries.projection_status())["events"]
        if before > 0:
            break
        await asyncio.sleep(0.01)
    await checked.platform.kill("projector")
    await checked.platform.start("projector")
    await _caught_up(checked)
    status = await queries.projection_status()
    decodable = 0
    async for record in read_to_end(checked.settings, event_topics(checked.settings)):
        try:
            checked.client.codec.decode(record.value)
            decodable += 1
        except Exception:
            continue
    assert status["events"] == decodable, "every event logged exactly once"
    assert (await rebuild(as_process(checked.settings, "projector"), verify=True)).differences == []


async def test_as_of_returns_the_earlier_status_of_a_completed_order(checked: Deployment):
    order_id = (await _place_and_finish(checked, ["happy"]))[0]
    queries = await _caught_up(checked)
    now = await queries.status(order_id)
    assert now is not None
    assert now["status"] == "completed"
    history = await queries.history(order_id)
    charged_at = next(h["occurred_at"] for h in history if h["event_type"] == "payment.charged")
    when = datetime.fromisoformat(charged_at)
    then = await queries.status(order_id, as_of=when)
    assert then is not None
    assert then["status"] == "paid"
    before = await queries.status(order_id, as_of=when - timedelta(days=1))
    assert before is None
