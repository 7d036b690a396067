"""What the order saga's decisions look like on the wire: events and commands.

The old order core, no longer used by the running coordinator (it decides with
:mod:`saga_coordinator.engine` on :mod:`sagas.order`): kept as the reference the engine is
checked against (``tests/unit/saga_coordinator/engine/test_order_equivalence.py``).

A decision fact (approve, compensate, complete, ...) stands for one event or command;
the timer loop wraps it in the saga's envelope (:func:`saga_coordinator.timers.saga_message`).
No I/O here.
"""

from __future__ import annotations

from datetime import datetime

from contracts.catalog import (
    APPROVAL_TIMEOUT,
    InventoryRelease,
    OrderApprovalRequested,
    OrderApproved,
    OrderCancelled,
    OrderCompleted,
    OrderNeedsAttention,
    OrderRejected,
    PaymentRefund,
    ShipmentCancel,
)
from contracts.order import (
    CompensationCommand,
)
from events.model import Event
from saga_coordinator.facts import (
    ApprovalEscalated,
    ApprovalRequested,
    ApprovalTimedOut,
    AutoApproved,
    CompensationAdded,
    CompensationExhausted,
    CompensationRequested,
    Fact,
    SagaCancelled,
    SagaCompleted,
)
from tests.unit.saga_coordinator.old_core.definition import SagaDefinition
from tests.unit.saga_coordinator.old_core.state import AUTO_APPROVER, PRODUCER, SagaState


def _render(fact: Fact, state: SagaState, d: SagaDefinition) -> list[Event]:
    """The event or command a decision fact stands for ([] for observations)."""
    match fact:
        case ApprovalRequested():
            assert state.total_minor is not None
            assert state.currency is not None
            return [
                OrderApprovalRequested(
                    total_minor=state.total_minor,
                    currency=state.currency,
                    threshold_minor=fact.threshold_minor,
                    requested_at=fact.at,
                    expires_at=fact.expires_at,
                )
            ]
        case AutoApproved():
            why = (
                f"total {state.total_minor} below the approval threshold {fact.threshold_minor}"
                if fact.approval_step
                else f"saga definition v{d.version} has no approval step"
            )
            return [OrderApproved(approved_by=AUTO_APPROVER, reason=why, approved_at=fact.at)]
        case ApprovalTimedOut():
            return [
                OrderRejected(rejected_by=PRODUCER, reason=APPROVAL_TIMEOUT, rejected_at=fact.at)
            ]
        case ApprovalEscalated():
            return [
                OrderNeedsAttention(
                    step="approval",
                    reason=(
                        f"approval requested at {_iso(state.approval_requested_at)} expired at "
                        f"{_iso(state.approval_expires_at)}; still waiting for a decision"
                    ),
                    detected_at=fact.at,
                )
            ]
        case CompensationAdded():
            return [_command(state, fact.command, 1, fact.at)]
        case CompensationRequested():
            return [_command(state, fact.command, fact.attempt, fact.at)]
        case CompensationExhausted():
            return [
                OrderNeedsAttention(
                    step=fact.command,
                    reason=(
                        f"{fact.command} not acknowledged after {fact.attempts} attempt(s) "
                        f"({state.cancel_reason}); compensation is blocked"
                    ),
                    detected_at=fact.at,
                )
            ]
        case SagaCompleted():
            return [OrderCompleted(completed_at=fact.at, notes=fact.notes)]
        case SagaCancelled():
            return [OrderCancelled(reason=fact.reason, detail=fact.detail, cancelled_at=fact.at)]
    return []


def _command(state: SagaState, command: CompensationCommand, attempt: int, at: datetime) -> Event:
    entry = state.compensation(command)
    assert entry is not None
    reason = entry.reason if attempt == 1 else f"{entry.reason} (attempt {attempt})"
    if command == "inventory.release":
        return InventoryRelease(reason=reason, requested_at=at)
    if command == "shipment.cancel":
        return ShipmentCancel(shipment_id=state.shipment_id, reason=reason, requested_at=at)
    assert state.charged_amount_minor is not None
    assert state.charged_currency is not None
    return PaymentRefund(
        payment_id=state.payment_id,
        amount_minor=state.charged_amount_minor,
        currency=state.charged_currency,
        reason=reason,
        requested_at=at,
    )


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "?"


# --------------------------------------------------------------------------- envelopes
