"""Durable timeouts on the real stack: approval timeout, payment deadline, a late answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from contracts.samples import sample_order_placed
from events.database import schema_name
from services.payment.store import PostgresPaymentStore
from tests.e2e.conftest import Deployment, start_deployment
from tests.e2e.order_saga import OrderSaga

pytestmark = pytest.mark.integration

# Short deadlines; the gateway waits longer than the payment deadline, so a slow gateway's
# answer comes after the saga already gave up on it.
ENV = {
    "CHOREO_SAGA_APPROVAL_TIMEOUT_S": "2",
    "CHOREO_SAGA_PAYMENT_DEADLINE_S": "1.5",
    "CHOREO_PAYMENT_GATEWAY_TIMEOUT_S": "6",
    "CHOREO_PAYMENT_SLOW_DELAY_S": "3",
}


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(ENV, "timeouts"):
        yield d


async def test_unanswered_approval_is_rejected_as_approval_timeout(checked: Deployment):
    order_id = await checked.place("large")
    await checked.wait_for(order_id, "awaiting_approval")
    state = await checked.wait_for(order_id, timeout=30)
    assert (state.status, state.cancel_reason) == ("cancelled", "approval_timeout")
    assert state.rejected_by == "saga-coordinator"
    assert state.payment_id is None


# Before the gateway that never answers: its charge keeps the payment service busy for a
# gateway timeout and more, and a deadline counts from the participant's pick-up (everything
# before the trigger consumed), so a slow answer queued behind it would not be late.
async def test_late_charge_after_compensation_is_refunded(checked: Deployment):
    order = sample_order_placed(payment_token="tok_slow")
    message = await checked.client.place_order(order)
    order_id = message.saga_key
    checked.orders.append(order_id)
    state = await checked.wait_for(order_id, timeout=30)
    assert (state.status, state.cancel_reason) == ("cancelled", "payment_timeout")
    # The slow gateway charged anyway; the saga must notice the late charge and refund it.
    state = await _wait_refunded(checked, order_id)
    assert "payment.refund" in [c.command for c in state.compensations]


async def test_gateway_that_never_answers_hits_the_payment_deadline(checked: Deployment):
    order_id = await checked.place("timeout")
    state = await checked.wait_for(order_id, timeout=30)
    assert (state.status, state.cancel_reason) == ("cancelled", "payment_timeout")
    assert [c.command for c in state.compensations][-1] == "inventory.release"


async def _wait_refunded(checked: Deployment, order_id: str) -> OrderSaga:
    deadline = time.monotonic() + 30
    while True:
        async with checked.db.pool.acquire() as conn:
            charges = await PostgresPaymentStore(
                conn, schema_name(checked.settings, "payment")
            ).charges()
        charge = charges.get(order_id)
        if charge is not None and charge.refunded:
            return await checked.saga(order_id)
        if time.monotonic() > deadline:
            raise AssertionError(f"late charge of {order_id} not refunded: {charge}")
        await asyncio.sleep(0.2)
