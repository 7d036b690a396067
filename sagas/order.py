"""The order saga, as a definition: reserve, approve, charge, ship, then CRM and email.

The same flow the README draws. Inventory reserves on ``order.placed``; the approval gate asks
a person when the total reaches the threshold (otherwise it approves at once); payment charges
on ``order.approved``; shipping books on ``payment.charged``; CRM and the confirmation email
run in parallel on ``shipment.scheduled``, CRM critical, email optional (completion notes it).
Undo runs newest first: cancel the shipment, refund, release the stock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

from contracts.catalog import (
    APPROVAL_TIMEOUT,
    CATALOG,
    CancelReason,
    CrmCustomerUpdated,
    EmailFailed,
    EmailSent,
    InventoryRelease,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderApprovalRequested,
    OrderApproved,
    OrderCancelled,
    OrderCompleted,
    OrderNeedsAttention,
    OrderPlaced,
    OrderRejected,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefund,
    PaymentRefunded,
    ShipmentCancel,
    ShipmentCancelled,
    ShipmentFailed,
    ShipmentScheduled,
)
from contracts.decisions import approval as approval_by
from contracts.decisions import rejection
from events.model import Event
from sagas.definition import (
    Compensation,
    Condition,
    Deadlines,
    Fails,
    HumanTask,
    Knob,
    SagaDefinition,
    Step,
    on,
)
from sagas.emit import Emit, Endings
from sagas.shared import ACK_TIMEOUT, MAX_ATTEMPTS, attempt_reason, deadline

COORDINATOR = "saga-coordinator"
AUTO_APPROVER = "policy:auto"
CONFIRMATION = "order_confirmation"

THRESHOLD = Knob("approval_threshold_minor", 100_000, "Totals at or above it need a person.")
APPROVAL_TIMEOUT_S = Knob("approval_timeout", timedelta(days=1), "How long a request stays open.")
TIMEOUT_ACTION: Knob[str] = Knob(
    "approval_timeout_action", "reject", "`reject` the order or `escalate` and keep waiting."
)


def _refund(e: Emit) -> Event:
    return PaymentRefund(
        payment_id=e.data.get("payment_id"),
        amount_minor=e.data["charged_amount_minor"],
        currency=e.data["charged_currency"],
        reason=attempt_reason(e),
        requested_at=e.at,
    )


def _request(e: Emit) -> Event:
    return OrderApprovalRequested(
        total_minor=e.data["total_minor"],
        currency=e.data["currency"],
        threshold_minor=e.knobs[THRESHOLD.name],
        requested_at=e.at,
        expires_at=e.at + e.knobs[APPROVAL_TIMEOUT_S.name],
    )


def _auto(e: Emit) -> Event:
    why = f"total {e.data['total_minor']} below the approval threshold {e.knobs[THRESHOLD.name]}"
    return OrderApproved(approved_by=AUTO_APPROVER, reason=why, approved_at=e.at)


def _confirmation(event: EmailSent | EmailFailed) -> bool:
    return event.template == CONFIRMATION


inventory = Step(
    "inventory",
    participant="inventory",
    succeeded_on=[on(InventoryReserved, capture={"reservation_id": "reservation_id"})],
    fails=[Fails(on(InventoryReservationFailed), "out_of_stock")],
    deadlines=Deadlines(answer=deadline("inventory", 30), reason="out_of_stock"),
    compensation=Compensation(
        InventoryRelease,
        lambda e: InventoryRelease(reason=attempt_reason(e), requested_at=e.at),
        acknowledged_by=InventoryReleased,
        ack_timeout=ACK_TIMEOUT,
        max_attempts=MAX_ATTEMPTS,
    ),
    milestone="reserved",
)


def _answer(approve: bool, by: str, reason: str | None) -> Event:
    """A person's answer to the approval, as the CLI and the API publish it."""
    return approval_by(by=by, reason=reason) if approve else rejection(by=by, reason=reason or "")


approval = HumanTask(
    "approval",
    after=["inventory"],
    when=Condition(
        "total ≥ approval threshold",
        lambda data, knobs: data["total_minor"] >= knobs[THRESHOLD.name],
        knobs=[THRESHOLD],
    ),
    request=_request,
    auto=_auto,
    approve_on=on(OrderApproved, capture={"approved_by": "approved_by"}),
    reject_on=Fails(
        on(
            OrderRejected,
            capture={"rejected_by": "rejected_by"},
            detail=lambda r: f"rejected by {r.rejected_by}: {r.reason}",
        ),
        "approval_rejected",
    ),
    timeout=APPROVAL_TIMEOUT_S,
    on_timeout=TIMEOUT_ACTION,
    timeout_event=lambda e: OrderRejected(
        rejected_by=COORDINATOR, reason=APPROVAL_TIMEOUT, rejected_at=e.at
    ),
    timeout_reason="approval_timeout",
    answer=_answer,
)
payment = Step(
    "payment",
    participant="payment",
    triggered_by=on(OrderApproved),
    after=["approval"],
    succeeded_on=[
        on(
            PaymentCharged,
            capture={
                "payment_id": "payment_id",
                "charged_amount_minor": "amount_minor",
                "charged_currency": "currency",
            },
        )
    ],
    fails=[Fails(on(PaymentDeclined), "payment_declined")],
    deadlines=Deadlines(answer=deadline("payment", 30), reason="payment_timeout"),
    compensation=Compensation(PaymentRefund, _refund, PaymentRefunded, ACK_TIMEOUT, MAX_ATTEMPTS),
    milestone="paid",
)
shipping = Step(
    "shipping",
    participant="shipping",
    triggered_by=on(PaymentCharged),
    after=["payment"],
    succeeded_on=[on(ShipmentScheduled, capture={"shipment_id": "shipment_id"})],
    fails=[Fails(on(ShipmentFailed), "shipment_failed")],
    deadlines=Deadlines(answer=deadline("shipping", 30), reason="shipment_failed"),
    compensation=Compensation(
        ShipmentCancel,
        lambda e: ShipmentCancel(
            shipment_id=e.data.get("shipment_id"), reason=attempt_reason(e), requested_at=e.at
        ),
        ShipmentCancelled,
        ACK_TIMEOUT,
        MAX_ATTEMPTS,
    ),
    milestone="shipped",
)
crm = Step(
    "crm",
    participant="crm",
    triggered_by=on(ShipmentScheduled),
    after=["shipping"],
    succeeded_on=[on(CrmCustomerUpdated)],
    # No cancel reason fits "CRM never confirmed"; the shipment is cancelled, so the order
    # ends shipment_failed and the detail says why.
    deadlines=Deadlines(
        answer=deadline("crm", 30), reason="shipment_failed", explain="shipment cancelled"
    ),
)
email = Step(
    "email",
    participant="email",
    triggered_by=on(ShipmentScheduled),
    after=["shipping"],
    succeeded_on=[on(EmailSent, where=_confirmation)],
    fails=[Fails(on(EmailFailed, where=_confirmation), "confirmation email failed")],
    critical=False,
    deadlines=Deadlines(answer=deadline("email", 15)),
    note=lambda kind, detail: (
        f"confirmation email failed: {detail}"
        if kind == "failed"
        else f"confirmation email outcome unknown: {detail}"
    ),
)

V1 = SagaDefinition(
    saga_type="order",
    version=1,
    key="order_id",
    start=on(OrderPlaced, capture={k: k for k in ("customer_id", "total_minor", "currency")}),
    nodes=[inventory, approval, payment, shipping, crm, email],
    endings=Endings(
        completed=lambda e: OrderCompleted(completed_at=e.at, notes=e.notes),
        cancelled=lambda e: OrderCancelled(
            reason=e.reason,  # one of `reasons`: the definition checks it
            detail=e.detail,
            cancelled_at=e.at,
        ),
        needs_attention=lambda e: OrderNeedsAttention(
            step=e.step, reason=e.reason, detected_at=e.at
        ),
    ),
    reasons=get_args(CancelReason),
    catalog=CATALOG,
    start_status="placed",
    emits=[
        OrderApprovalRequested,
        OrderApproved,
        OrderRejected,
        OrderCompleted,
        OrderCancelled,
        OrderNeedsAttention,
    ],
)
"""The order saga as the README describes it."""
