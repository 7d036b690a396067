"""The order saga as a Temporal workflow, following Temporal's saga sample.

``OrderSaga`` runs the steps as activities (:mod:`bench.peers.temporal_activities`) with
timeouts and retry policies (transient provider errors are retried on the server's schedule;
a bounced mail is non-retryable), keeps a list of compensations and runs them newest first
when a step fails; a large order waits for an ``approve`` signal. Kept in a module of its own
with every import passed through the sandbox, as the SDK recommends: the sandbox re-runs
this module for each workflow run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from bench.peers import common
    from bench.peers.common import (
        CALL_TIMEOUT_S,
        CANCELLATION,
        CONFIRMATION,
        GATEWAY_TIMEOUT_S,
        PAYMENT_DEADLINE_S,
        PeerOrder,
    )
    from bench.peers.temporal_activities import OrderActivities

TASK_QUEUE = "choreo-bench-orders"
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=10)
)
"""Transient failures: retried from 0.5 s, doubling, up to 10 s apart, until the timeout."""
DB: dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=10), "retry_policy": RETRY}
CALL: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=CALL_TIMEOUT_S),
    "retry_policy": RETRY,
}
MAIL: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=CALL_TIMEOUT_S),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        maximum_attempts=5,
        non_retryable_error_types=["MailBounced"],
    ),
}
CHARGE: dict[str, Any] = {
    # One gateway call may take GATEWAY_TIMEOUT_S; payment as a whole PAYMENT_DEADLINE_S.
    "start_to_close_timeout": timedelta(seconds=GATEWAY_TIMEOUT_S),
    "schedule_to_close_timeout": timedelta(seconds=PAYMENT_DEADLINE_S),
    "retry_policy": RETRY,
}


A = OrderActivities


@workflow.defn(name="OrderSaga")
class OrderSaga:
    """One order: reserve, approve, charge, ship, then CRM, stock and mail in parallel;
    compensations newest first on a cancellation."""

    def __init__(self) -> None:
        self.decision: str | None = None

    @workflow.signal
    def approve(self, decision: str) -> None:
        """A person's decision on a large order: ``approved`` or ``rejected``."""
        self.decision = decision

    @workflow.run
    async def run(self, order: PeerOrder) -> str:
        compensations: list[tuple[Any, Any]] = []
        outcome = await self._forward(order, compensations)
        if outcome.startswith("cancelled:"):
            for step, arg in reversed(compensations):
                await workflow.execute_activity_method(step, arg, **DB)
            await self._mail(order, CANCELLATION, outcome.partition(":")[2].replace("_", " "))
        return outcome

    async def _mail(self, order: PeerOrder, template: str, detail: str) -> bool:
        try:
            await workflow.execute_activity_method(
                A.send_email, args=[order, template, detail], **MAIL
            )
        except ActivityError:
            return False  # the mail is optional: noted, the saga goes on
        return True

    # Long: the saga's forward path reads best as one function, step after step.
    async def _forward(self, order: PeerOrder, compensations: list[tuple[Any, Any]]) -> str:
        reserved, _ = await workflow.execute_activity_method(A.reserve, order, **DB)
        if not reserved:
            return "cancelled:out_of_stock"
        compensations.append((A.release, order.order_id))
        if order.needs_approval:
            try:
                await workflow.wait_condition(
                    lambda: self.decision is not None,
                    timeout=timedelta(seconds=common.APPROVAL_TIMEOUT_S),
                )
            except TimeoutError:
                return "cancelled:approval_timeout"
            if self.decision != "approved":
                return "cancelled:approval_rejected"
        # As in Temporal's saga sample, the compensation is added before the call: a charge
        # whose answer timed out may still have happened, and the refund is idempotent.
        try:
            charged = await workflow.execute_activity_method(A.charge, order, **CHARGE)
        except ActivityError:
            compensations.append((A.refund, order))
            return "cancelled:payment_timeout"
        if charged != "charged":
            return "cancelled:payment_declined"
        compensations.append((A.refund, order))
        shipment_id = await workflow.execute_activity_method(A.book, order, **CALL)
        if shipment_id is None:
            return "cancelled:shipment_failed"
        compensations.append((A.cancel_shipment, order.order_id))
        stock, crm, _ = await asyncio.gather(
            workflow.execute_activity_method(A.ship_stock, order.order_id, **DB),
            workflow.execute_activity_method(A.update_crm, order, **CALL),
            self._mail(order, CONFIRMATION, "Your parcel is on its way."),
            return_exceptions=True,
        )
        if isinstance(stock, BaseException) or isinstance(crm, BaseException):
            return "cancelled:shipment_failed"
        return "completed"
