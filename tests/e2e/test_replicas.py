"""Two replicas of the coordinator and of payment in their consumer groups: every order ends
as its path says, nothing is emitted or charged twice, and each timer fires once."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from events.database import schema_name
from events.headers import header
from events.topics import read_to_end, topic_for
from saga_coordinator.store import PostgresSagaStore
from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration

REPLICAS = {"saga-coordinator": 2, "payment": 2}
# Timers that fall due during the test: the approval timeout and the payment deadline (long
# enough that a healthy payment is not late on a busy machine).
ENV = {"CHOREO_SAGA_APPROVAL_TIMEOUT_S": "4", "CHOREO_SAGA_PAYMENT_DEADLINE_S": "10"}
EXPECTED = {  # scenario: (status, cancel reason), for how many orders
    "happy": (("completed", None), 5),
    "flaky": (("completed", None), 2),  # retried from the shared retry queue
    "declined": (("cancelled", "payment_declined"), 1),
    "unshippable": (("cancelled", "shipment_failed"), 1),
    "timeout": (("cancelled", "payment_timeout"), 1),  # the payment deadline's timer
    "large": (("cancelled", "approval_timeout"), 1),  # nobody approves: the approval timer
}
TERMINAL_EVENTS = {"order.completed", "order.cancelled"}
ASSIGNED = re.compile(r"assigned (\d+) partitions")


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(ENV, "replicas", REPLICAS):
        yield d


async def _each_instance_has_partitions(d: Deployment, timeout: float = 60.0) -> None:
    """Wait until every instance's latest assignment (its log) holds partitions: the group
    has split the work between the replicas."""
    labels = [label for label in d.platform.labels if label.partition("#")[0] in REPLICAS]
    deadline = time.monotonic() + timeout
    while True:
        latest = {
            label: ([0, *map(int, ASSIGNED.findall(d.platform.log(label)))])[-1] for label in labels
        }
        if all(latest.values()):
            return
        assert time.monotonic() < deadline, f"partitions per instance: {latest}"
        await asyncio.sleep(0.5)


async def test_two_replicas_end_every_order_once(checked: Deployment):
    await _each_instance_has_partitions(checked)
    orders = {
        await checked.place(scenario): scenario
        for scenario, (_, count) in EXPECTED.items()
        for _ in range(count)
    }
    for order_id, scenario in orders.items():
        state = await checked.wait_for(order_id, timeout=90)
        assert (state.status, state.cancel_reason) == EXPECTED[scenario][0], (scenario, state)

    # Each saga decided its ending once, and each timer that fired did so once.
    schema = schema_name(checked.settings, "saga_coordinator")
    async with checked.db.pool.acquire() as conn:
        streams = {o: await PostgresSagaStore(conn, schema).load(o) for o in orders}
    for order_id, facts in streams.items():
        kinds = Counter(fact.kind for fact in facts)
        assert kinds["saga.completed"] + kinds["saga.cancelled"] == 1, (order_id, kinds)
        assert kinds["task.decided"] <= 1, (order_id, kinds)  # the approval, or its timeout
        assert kinds["undo.started"] <= 1, (order_id, kinds)

    # In the log: one ending per order, after everything else the coordinator said of it, and
    # no message published twice (the relays of two replicas share one outbox).
    records = [
        r
        async for r in read_to_end(checked.settings, [topic_for("order.placed", checked.settings)])
        if (r.key or b"").decode() in orders
    ]
    ids = Counter(header(r.headers, "event_id") for r in records)
    assert [i for i, n in ids.items() if n > 1] == []
    for order_id in orders:
        types = [header(r.headers, "event_type") for r in records if r.key == order_id.encode()]
        assert sum(t in TERMINAL_EVENTS for t in types) == 1, (order_id, types)
        assert types[-1] in TERMINAL_EVENTS, (order_id, types)
