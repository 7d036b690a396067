"""The returns saga, as a definition: approve, pick up, inspect and restock, refund, confirm.

A customer asks to return items of an order (``return.requested``, keyed by the return id).
Refunds at or above a threshold need a person (as large orders do); shipping books a pickup
on ``return.approved``; inventory inspects what the carrier collects and restocks it; payment
refunds the items' price from the order's charge (partial refunds allowed); the confirmation
email is optional. Undo runs newest first: take the restocked units out again, cancel the
pickup. Nothing here is new to the coordinator: it interprets this module as it does
:mod:`sagas.order`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

from contracts.catalog import CATALOG, EmailFailed, EmailSent
from contracts.returns import (
    InventoryRestocked,
    InventoryRestockRefused,
    InventoryUnstock,
    InventoryUnstocked,
    PaymentReturnRefundDeclined,
    PaymentReturnRefunded,
    PickupCancel,
    PickupCancelled,
    PickupFailed,
    PickupScheduled,
    ReturnApprovalRequested,
    ReturnApproved,
    ReturnCancelled,
    ReturnCancelReason,
    ReturnCompleted,
    ReturnNeedsAttention,
    ReturnRejected,
    ReturnRequested,
)
from events.model import Event, utc_now
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
CONFIRMATION = "return_confirmation"

THRESHOLD = Knob(
    "refund_approval_threshold_minor", 100_000, "Refunds at or above it need a person."
)
APPROVAL_TIMEOUT = Knob(
    "return_approval_timeout", timedelta(days=2), "How long a return's approval stays open."
)
TIMEOUT_ACTION: Knob[str] = Knob(
    "return_approval_timeout_action", "reject", "`reject` the return or `escalate` and wait."
)


def _request(e: Emit) -> Event:
    return ReturnApprovalRequested(
        refund_minor=e.data["refund_minor"],
        currency=e.data["currency"],
        threshold_minor=e.knobs[THRESHOLD.name],
        requested_at=e.at,
        expires_at=e.at + e.knobs[APPROVAL_TIMEOUT.name],
    )


def _auto(e: Emit) -> Event:
    why = f"refund {e.data['refund_minor']} below the approval threshold {e.knobs[THRESHOLD.name]}"
    return ReturnApproved(approved_by="policy:auto", reason=why, approved_at=e.at)


def _confirmation(event: EmailSent | EmailFailed) -> bool:
    return event.template == CONFIRMATION


def _answer(approve: bool, by: str, reason: str | None) -> Event:
    """A person's answer to the approval, as the CLI and the API publish it."""
    if approve:
        return ReturnApproved(approved_by=by, reason=reason, approved_at=utc_now())
    return ReturnRejected(rejected_by=by, reason=reason or "", rejected_at=utc_now())


approval = HumanTask(
    "approval",
    after=[],
    when=Condition(
        "refund ≥ approval threshold",
        lambda data, knobs: data["refund_minor"] >= knobs[THRESHOLD.name],
        knobs=[THRESHOLD],
    ),
    request=_request,
    auto=_auto,
    approve_on=on(ReturnApproved, capture={"approved_by": "approved_by"}),
    reject_on=Fails(
        on(
            ReturnRejected,
            capture={"rejected_by": "rejected_by"},
            detail=lambda r: f"rejected by {r.rejected_by}: {r.reason}",
        ),
        "approval_rejected",
    ),
    timeout=APPROVAL_TIMEOUT,
    on_timeout=TIMEOUT_ACTION,
    timeout_event=lambda e: ReturnRejected(
        rejected_by=COORDINATOR, reason="approval_timeout", rejected_at=e.at
    ),
    timeout_reason="approval_timeout",
    answer=_answer,
)
pickup = Step(
    "pickup",
    participant="shipping",
    triggered_by=on(ReturnApproved),
    after=["approval"],
    succeeded_on=[on(PickupScheduled, capture={"pickup_id": "pickup_id"})],
    fails=[Fails(on(PickupFailed), "pickup_failed")],
    deadlines=Deadlines(answer=deadline("pickup", 30), reason="pickup_failed"),
    compensation=Compensation(
        PickupCancel,
        lambda e: PickupCancel(
            pickup_id=e.data.get("pickup_id"), reason=attempt_reason(e), requested_at=e.at
        ),
        PickupCancelled,
        ACK_TIMEOUT,
        MAX_ATTEMPTS,
    ),
    milestone="collecting",
)
inspection = Step(
    "inspection",
    participant="inventory",
    triggered_by=on(PickupScheduled),
    after=["pickup"],
    succeeded_on=[on(InventoryRestocked, capture={"restock_id": "restock_id"})],
    fails=[
        Fails(
            on(InventoryRestockRefused, detail=lambda r: f"{r.reason}: {', '.join(r.skus)}"),
            "inspection_failed",
        )
    ],
    deadlines=Deadlines(answer=deadline("inspection", 30), reason="inspection_failed"),
    compensation=Compensation(
        InventoryUnstock,
        lambda e: InventoryUnstock(reason=attempt_reason(e), requested_at=e.at),
        InventoryUnstocked,
        ACK_TIMEOUT,
        MAX_ATTEMPTS,
    ),
    milestone="restocked",
)
refund = Step(
    "refund",
    participant="payment",
    triggered_by=on(InventoryRestocked),
    after=["inspection"],
    succeeded_on=[
        on(PaymentReturnRefunded, capture={"refund_id": "refund_id", "refunded": "amount_minor"})
    ],
    fails=[Fails(on(PaymentReturnRefundDeclined), "refund_declined")],
    deadlines=Deadlines(answer=deadline("refund", 30), reason="refund_timeout"),
    milestone="refunded",
)
email = Step(
    "email",
    participant="email",
    triggered_by=on(PaymentReturnRefunded),
    after=["refund"],
    succeeded_on=[on(EmailSent, where=_confirmation)],
    fails=[Fails(on(EmailFailed, where=_confirmation), "confirmation email failed")],
    critical=False,
    deadlines=Deadlines(answer=deadline("return_email", 15)),
    note=lambda kind, detail: (
        f"return confirmation email failed: {detail}"
        if kind == "failed"
        else f"return confirmation email outcome unknown: {detail}"
    ),
)

V1 = SagaDefinition(
    saga_type="return",
    version=1,
    key="return_id",
    start=on(
        ReturnRequested,
        capture={k: k for k in ("order_id", "customer_id", "refund_minor", "currency")},
    ),
    nodes=[approval, pickup, inspection, refund, email],
    endings=Endings(
        completed=lambda e: ReturnCompleted(completed_at=e.at, notes=e.notes),
        cancelled=lambda e: ReturnCancelled(reason=e.reason, detail=e.detail, cancelled_at=e.at),
        needs_attention=lambda e: ReturnNeedsAttention(
            step=e.step, reason=e.reason, detected_at=e.at
        ),
    ),
    reasons=get_args(ReturnCancelReason),
    catalog=CATALOG,
    start_status="requested",
    emits=[
        ReturnApprovalRequested,
        ReturnApproved,
        ReturnRejected,
        ReturnCompleted,
        ReturnCancelled,
        ReturnNeedsAttention,
    ],
)
"""The returns saga as the README describes it."""
