"""Every path of the returns saga on the real stack, beside orders, on the same coordinator.

A return names an order; each test first runs the order its return is of to its end, then
follows the return through the coordinator's own state (seen through the returns
definition) and checks what the services did from their answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from choreo.roles import as_process
from contracts.return_samples import RETURN_OF, scenario_return
from contracts.returns import ReturnApproved
from events.database import schema_name
from events.model import utc_now
from projections import sagas_queries
from projections.queries import Queries
from projections.rebuild import rebuild
from saga_coordinator import legacy
from saga_coordinator.engine.state import SagaState, fold
from saga_coordinator.store import PostgresSagaStore
from sagas.returns import V1 as RETURN
from sagas.shipped import SAGAS
from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration

ENV = {"CHOREO_SAGA_APPROVAL_TIMEOUT_S": "120"}


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(ENV, "returns"):
        yield d


async def return_state(d: Deployment, return_id: str) -> SagaState:
    schema = schema_name(d.settings, "saga_coordinator")
    async with d.db.pool.acquire() as conn:
        facts = await PostgresSagaStore(conn, schema).load(return_id)
    return fold(return_id, legacy.read(facts, SAGAS))


async def wait_return(
    d: Deployment, return_id: str, *statuses: str, timeout: float = 60.0
) -> SagaState:
    wanted = set(statuses or ("completed", "cancelled"))
    deadline = time.monotonic() + timeout
    state = await return_state(d, return_id)
    while state.status(RETURN) not in wanted:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"return {return_id} is {state.status(RETURN)}, not {sorted(wanted)};"
                f" {state}\n" + d.platform.tail("saga-coordinator")
            )
        await asyncio.sleep(0.2)
        state = await return_state(d, return_id)
    return state


async def request(d: Deployment, scenario: str) -> str:
    """Run the order the scenario returns items of to its end, then request the return."""
    order_id = await d.place(RETURN_OF[scenario])
    if RETURN_OF[scenario] == "large":
        await d.wait_for(order_id, "awaiting_approval")
        await d.client.approve(order_id, by="ops-ann")
    await d.wait_for(order_id)
    message = await d.client.start_saga("return", scenario_return(scenario, order_id))
    assert message.envelope.saga_type == "return"
    return message.saga_key


def undone(state: SagaState) -> list[tuple[str, bool]]:
    return [(RETURN.compensation(u.step).command.event_type, u.acknowledged) for u in state.undos]


async def test_a_small_return_is_picked_up_restocked_refunded_and_confirmed(checked: Deployment):
    return_id = await request(checked, "happy")
    state = await wait_return(checked, return_id)
    assert state.status(RETURN) == "completed"
    assert state.saga_type == "return"
    assert state.data["approved_by"] == "policy:auto"
    assert state.data["pickup_id"]
    assert state.data["restock_id"]
    assert state.data["refund_id"]
    assert state.data["refunded"] == 1_250  # part of the order's charge
    assert state.step("email").outcome == "succeeded"
    assert undone(state) == []


async def test_a_large_return_waits_for_a_person_then_completes(checked: Deployment):
    return_id = await request(checked, "large")
    state = await wait_return(checked, return_id, "awaiting_approval")
    assert "pickup_id" not in state.data  # nothing booked before the approval
    await checked.client.answer("return", return_id, approved_return("ops-ann"))
    state = await wait_return(checked, return_id)
    assert state.status(RETURN) == "completed"
    assert state.data["approved_by"] == "ops-ann"
    assert state.data["refunded"] == 250_000


async def test_an_unserved_pickup_address_cancels_with_nothing_to_undo(checked: Deployment):
    return_id = await request(checked, "unpickable")
    state = await wait_return(checked, return_id)
    assert (state.status(RETURN), state.cancel_reason) == ("cancelled", "pickup_failed")
    assert undone(state) == []


async def test_a_damaged_item_fails_inspection_and_the_pickup_is_cancelled(checked: Deployment):
    return_id = await request(checked, "damaged")
    state = await wait_return(checked, return_id)
    assert (state.status(RETURN), state.cancel_reason) == ("cancelled", "inspection_failed")
    assert undone(state) == [("pickup.cancel", True)]


async def test_a_return_of_an_unpaid_order_undoes_the_restock_then_the_pickup(
    checked: Deployment,
):
    return_id = await request(checked, "unpaid")
    state = await wait_return(checked, return_id)
    assert (state.status(RETURN), state.cancel_reason) == ("cancelled", "refund_declined")
    assert undone(state) == [("inventory.unstock", True), ("pickup.cancel", True)]


async def test_coordinator_killed_mid_return_finishes_every_return(checked: Deployment):
    orders = {s: await checked.place(RETURN_OF[s]) for s in ("happy", "damaged", "unpaid")}
    for order_id in orders.values():
        await checked.wait_for(order_id)
    await checked.platform.kill("saga-coordinator")
    # While it is dead the returns start and the services answer what they can.
    returns = {
        s: (await checked.client.start_saga("return", scenario_return(s, o))).saga_key
        for s, o in orders.items()
    }
    await asyncio.sleep(2)
    await checked.platform.start("saga-coordinator")
    expected = {"happy": None, "damaged": "inspection_failed", "unpaid": "refund_declined"}
    compensated = {  # as each path's own test above: every compensation acknowledged
        "happy": [],
        "damaged": [("pickup.cancel", True)],
        "unpaid": [("inventory.unstock", True), ("pickup.cancel", True)],
    }
    for scenario, return_id in returns.items():
        state = await wait_return(checked, return_id)
        assert state.cancel_reason == expected[scenario], scenario
        assert undone(state) == compensated[scenario], scenario


def approved_return(by: str) -> ReturnApproved:
    return ReturnApproved(approved_by=by, reason="known customer", approved_at=utc_now())


async def caught_up(d: Deployment, timeout: float = 60) -> Queries:
    """The projector has projected everything on the topics."""
    queries = Queries(d.db, d.settings)
    deadline = time.monotonic() + timeout
    while not (await queries.ready() and (await queries.projection_status())["total_lag"] == 0):
        assert time.monotonic() < deadline, "projector did not catch up\n" + d.platform.tail(
            "projector"
        )
        await asyncio.sleep(0.2)
    return queries


async def test_read_models_show_returns_as_sagas_and_rebuild_clean_with_both_types(
    checked: Deployment,
):
    returns = {s: await request(checked, s) for s in ("happy", "damaged", "unpaid")}
    for return_id in returns.values():
        await wait_return(checked, return_id)
    queries = await caught_up(checked)
    for scenario, return_id in returns.items():
        state = await return_state(checked, return_id)
        row = await sagas_queries.saga(queries, "return", return_id)
        assert row is not None, scenario
        assert (row["status"], row["reason"]) == (state.status(RETURN), state.cancel_reason)
        assert await queries.status(return_id) is None  # the orders API shows orders only
        history = await sagas_queries.history(queries, "return", return_id)
        assert history is not None
        assert history[0]["event_type"] == "return.requested"
    for order_id in checked.orders:
        assert await sagas_queries.saga(queries, "order", order_id) is not None
    # The log holds orders and returns (this module's every path): a rebuild agrees with both.
    one_lane = await rebuild(as_process(checked.settings, "projector"), verify=True, workers=1)
    assert one_lane.differences == [], one_lane.differences
    lanes = await rebuild(as_process(checked.settings, "projector"), verify=True, workers=3)
    assert lanes.differences == []
    assert lanes.events == one_lane.events
