"""SIGKILL in the middle of sagas: nothing lost, nothing done twice, timers still fire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration

ENV = {"CHOREO_SAGA_APPROVAL_TIMEOUT_S": "4", "CHOREO_SAGA_PAYMENT_DEADLINE_S": "3"}


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(ENV, "crash"):
        yield d


async def test_coordinator_killed_mid_saga_finishes_every_saga_after_restart(
    checked: Deployment,
):
    large = await checked.place("large")
    await checked.wait_for(large, "awaiting_approval")  # its approval timer is now pending
    await checked.platform.kill("saga-coordinator")
    # While the coordinator is dead the services keep going and timers fall due.
    happy = [await checked.place("happy") for _ in range(5)]
    declined = await checked.place("declined")
    unshippable = await checked.place("unshippable")
    timeout = await checked.place("timeout")
    await asyncio.sleep(5)  # past the approval timeout and the payment deadline
    await checked.platform.start("saga-coordinator")

    for order_id in happy:
        assert (await checked.wait_for(order_id)).status == "completed"
    expectations = {
        large: "approval_timeout",
        declined: "payment_declined",
        unshippable: "shipment_failed",
        timeout: "payment_timeout",
    }
    for order_id, reason in expectations.items():
        state = await checked.wait_for(order_id)
        assert (state.status, state.cancel_reason) == ("cancelled", reason), order_id
