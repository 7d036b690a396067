"""Deadlines that judge the participant, on the real stack: a burst whose queueing outlasts
the deadlines cancels no order by deadline, and neither does a broker restart with the payment
process killed across it; a gateway that never answers still times out.

The deadlines are shortened (their ``CHOREO_SAGA_*_DEADLINE_S`` knobs) below what the burst
(200 orders at once, in polls of 10) and the outage make messages wait in Choreo's own
queues, so that without the judgement of :mod:`saga_coordinator.fairness` healthy orders
would be cancelled (``CHOREO_SAGA_TIMER_FAIR=false`` shows it). The broker restart stops and
starts the stack's own Kafka: run this file only against a stack of your own (``make test``
runs the suite one test at a time on its session stack).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from choreo.stack.base import StackSettings
from choreo.stack.kafka import Kafka
from events.settings import get_settings
from tests.e2e.conftest import TERMINAL, Deployment, start_deployment
from tests.e2e.order_saga import OrderSaga

pytestmark = pytest.mark.integration


def deadlines(seconds: int) -> dict[str, str]:
    steps = ("INVENTORY", "PAYMENT", "SHIPPING", "CRM", "EMAIL")
    return {f"CHOREO_SAGA_{step}_DEADLINE_S": str(seconds) for step in steps}


# Polls of at most 10 records: the answer time includes handling the poll the trigger came in.
BURST_ENV = {**deadlines(6), "CHOREO_CONSUMER_BATCH_SIZE": "10"}
# Long enough for what a participant killed mid-poll had already been charged (until the
# broker noticed it gone: the session timeout), far shorter than the outage.
RESTART_ENV = deadlines(15)
EXPECTED = {"happy": ("completed", None), "declined": ("cancelled", "payment_declined")}
EXPECTED["timeout"] = ("cancelled", "payment_timeout")


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(BURST_ENV, "fair-burst"):
        yield d


@pytest.fixture
async def restarted(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(RESTART_ENV, "fair-restart"):
        yield d
        await d.check_invariants()


async def place_all(checked: Deployment, scenarios: list[str]) -> dict[str, str]:
    """Place one order per scenario at once; order id → scenario."""
    ids = await asyncio.gather(*(checked.place(name) for name in scenarios))
    return dict(zip(ids, scenarios, strict=True))


async def outcomes(checked: Deployment, orders: dict[str, str], timeout: float) -> Counter[str]:
    """Wait until every order ended; check each ended as its scenario says (no order
    cancelled by a deadline but the gateway that never answers, no email outcome unknown);
    the count of each ending."""
    deadline = time.monotonic() + timeout
    ended: dict[str, OrderSaga] = {}
    while len(ended) < len(orders):
        for order_id in orders.keys() - ended.keys():
            state = await checked.saga(order_id)
            if state.status in TERMINAL:
                ended[order_id] = state
        assert time.monotonic() < deadline, f"{len(orders) - len(ended)} orders still running"
        await asyncio.sleep(0.5)
    wrong = {
        order_id: (orders[order_id], s.status, s.cancel_reason, s.notes)
        for order_id, s in ended.items()
        if (s.status, s.cancel_reason) != EXPECTED[orders[order_id]] or s.notes
    }
    assert not wrong, f"{len(wrong)} orders ended otherwise than their path says: {wrong}"
    return Counter(f"{s.status}:{s.cancel_reason}" for s in ended.values())


@pytest.mark.timeout(600)
async def test_a_burst_longer_than_the_deadlines_cancels_no_order_by_deadline(
    checked: Deployment,
):
    scenarios = ["happy"] * 190 + ["declined"] * 6 + ["timeout"] * 4
    orders = await place_all(checked, scenarios)
    counts = await outcomes(checked, orders, timeout=480)
    assert counts == Counter(
        {"completed:None": 190, "cancelled:payment_declined": 6, "cancelled:payment_timeout": 4}
    )


@pytest.mark.timeout(600)
async def test_a_broker_restart_with_payment_killed_cancels_no_healthy_order(
    restarted: Deployment,
):
    kafka = Kafka(get_settings(), StackSettings())
    assert not kafka.external, "the broker restart needs the stack's own Kafka"
    mix = ["happy"] * 20 + ["declined"] * 2 + ["timeout"] * 2
    before = await place_all(restarted, mix)
    await restarted.platform.kill("payment")  # what it had not committed waits for it
    during = await place_all(restarted, mix)  # their approvals wait in the broker
    await asyncio.sleep(2)
    await asyncio.to_thread(kafka.stop, print)
    await asyncio.sleep(16)  # past every deadline with the broker away
    await asyncio.to_thread(kafka.start, print)
    await restarted.platform.start("payment", timeout=120)
    after = await place_all(restarted, ["happy"] * 10 + ["timeout"])
    counts = await outcomes(restarted, {**before, **during, **after}, timeout=420)
    assert counts == Counter(
        {"completed:None": 50, "cancelled:payment_declined": 4, "cancelled:payment_timeout": 5}
    )
