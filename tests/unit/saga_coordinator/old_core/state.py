"""The order saga's state: a fold of its facts. No I/O here.

The old order core, no longer used by the running coordinator (it decides with
:mod:`saga_coordinator.engine` on :mod:`sagas.order`): kept as the reference the engine is
checked against (``tests/unit/saga_coordinator/engine/test_order_equivalence.py``).

:func:`evolve` applies one fact to a :class:`SagaState`; :func:`fold` applies a stream. The
decisions (:mod:`tests.unit.saga_coordinator.old_core.saga`) read the state; only facts change it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Literal, cast

from contracts.catalog import APPROVAL_TIMEOUT, CancelReason
from contracts.order import (
    CompensationCommand,
    SagaStatus,
)
from saga_coordinator import SERVICE_NAME
from saga_coordinator.errors import SagaError
from saga_coordinator.facts import (
    ApprovalEscalated,
    ApprovalRequested,
    ApprovalTimedOut,
    Approved,
    AutoApproved,
    CompensationAcknowledged,
    CompensationAdded,
    CompensationExhausted,
    CompensationRequested,
    CompensationStarted,
    CustomerUpdated,
    DeadlinePassed,
    EmailOutcome,
    EmailOutcomeKind,
    EventIgnored,
    Fact,
    OrderSeen,
    PaymentRefused,
    PaymentTaken,
    Rejected,
    SagaCancelled,
    SagaCompleted,
    SagaStarted,
    ShipmentBooked,
    ShipmentNotBooked,
    StockReserved,
    StockUnavailable,
)

PRODUCER = SERVICE_NAME
"""The coordinator's producer name in envelopes (and its `rejected_by` on approval timeouts)."""

AUTO_APPROVER = "policy:auto"
"""`order.approved.approved_by` when the policy approved without a human."""


@dataclass(frozen=True, slots=True)
class Compensation:
    """One compensating command of a saga and how far it got.

    ``attempt`` 0 means planned but not sent yet (compensation is sequential).
    """

    command: CompensationCommand
    reason: str
    attempt: int = 0
    requested_at: datetime | None = None
    acknowledged: bool = False
    exhausted: bool = False

    @property
    def in_flight(self) -> bool:
        """Sent and not acknowledged (exhausted ones included: they still block the rest)."""
        return self.attempt > 0 and not self.acknowledged


@dataclass(frozen=True, slots=True)
class SagaState:
    """Everything the saga knows about one order; built only by :func:`evolve`.

    ``version`` is the number of facts folded, i.e. the ``seq`` of the last one; appends are
    checked against it. ``cancel_reason`` is set as soon as compensation starts (it is what
    `order.cancelled` will say) and ``cancelled_at`` once every compensation is acknowledged.
    """

    order_id: str
    version: int = 0
    definition_version: int | None = None
    steps: tuple[str, ...] = ()
    correlation_id: str | None = None
    last_event_id: uuid.UUID | None = None
    seen: frozenset[uuid.UUID] = frozenset()
    # order.placed
    customer_id: str | None = None
    total_minor: int | None = None
    currency: str | None = None
    placed_at: datetime | None = None
    # inventory
    reservation_id: str | None = None
    reserved_at: datetime | None = None
    out_of_stock: str | None = None
    # approval
    approval_requested_at: datetime | None = None
    approval_expires_at: datetime | None = None
    approval: Literal["approved", "rejected"] | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    rejected_by: str | None = None
    rejection_reason: str | None = None
    approval_escalated: bool = False
    # payment
    payment_id: str | None = None
    charged_amount_minor: int | None = None
    charged_currency: str | None = None
    charged_at: datetime | None = None
    declined: str | None = None
    # shipment, crm, email
    shipment_id: str | None = None
    shipped_at: datetime | None = None
    shipment_failure: str | None = None
    crm_updated_at: datetime | None = None
    email_outcome: EmailOutcomeKind | None = None
    email_detail: str | None = None
    # endings
    deadlines_passed: tuple[str, ...] = ()
    cancel_reason: CancelReason | None = None
    cancel_detail: str | None = None
    compensations: tuple[Compensation, ...] = ()
    completed_at: datetime | None = None
    notes: tuple[str, ...] = ()
    cancelled_at: datetime | None = None
    ignored: int = 0

    @property
    def started(self) -> bool:
        return self.definition_version is not None

    @property
    def compensating(self) -> bool:
        return self.cancel_reason is not None and self.cancelled_at is None

    @property
    def active(self) -> bool:
        """Moving forward: started, and neither compensating nor ended."""
        return self.started and self.cancel_reason is None and self.completed_at is None

    @property
    def needs_attention(self) -> bool:
        """An operator must act: a compensation ran out of attempts, or an expired approval
        was escalated and nobody has decided yet."""
        stuck = any(c.exhausted and not c.acknowledged for c in self.compensations)
        waiting = self.approval_escalated and self.approval is None and self.active
        return stuck or waiting

    @property
    def status(self) -> SagaStatus:
        if self.needs_attention:
            return "needs_attention"
        if self.cancelled_at is not None:
            return "cancelled"
        if self.completed_at is not None:
            return "completed"
        if self.cancel_reason is not None:
            return "compensating"
        if self.shipment_id is not None:
            return "shipped"
        if self.payment_id is not None:
            return "paid"
        if self.approval_requested_at is not None and self.approval is None:
            return "awaiting_approval"
        if self.reservation_id is not None:
            return "reserved"
        return "placed"

    @property
    def current_step(self) -> str | None:
        """What the saga waits for: a step name, a compensating command, or None when done."""
        if self.cancel_reason is not None:
            pending = [c for c in self.compensations if c.in_flight] or [
                c for c in self.compensations if c.attempt == 0
            ]
            return pending[0].command if pending else None
        if self.completed_at is not None or not self.started:
            return None
        if self.reservation_id is None:
            return "inventory"
        if self.approval is None and self.approval_requested_at is not None:
            return "approval"
        if self.payment_id is None:
            return "payment"
        if self.shipment_id is None:
            return "shipping"
        if "crm" in self.steps and self.crm_updated_at is None:
            return "crm"
        if "email" in self.steps and self.email_outcome is None:
            return "email"
        return None

    @property
    def compensations_done(self) -> tuple[CompensationCommand, ...]:
        """Acknowledged compensating commands, in the order they were planned."""
        return tuple(c.command for c in self.compensations if c.acknowledged)

    def compensation(self, command: str) -> Compensation | None:
        return next((c for c in self.compensations if c.command == command), None)

    def succeeded(self, command: CompensationCommand) -> bool:
        """Whether the step ``command`` undoes is known to have happened."""
        if command == "shipment.cancel":
            return self.shipment_id is not None
        if command == "payment.refund":
            return self.payment_id is not None
        return self.reservation_id is not None


_INITIAL_FIELDS: dict[str, object] = {
    f.name: getattr(SagaState(""), f.name)
    for f in dataclasses.fields(SagaState)
    if f.name != "order_id"
}
"""A new saga's fields (the defaults), from which :func:`fold` starts."""


def _with_compensation(
    state: SagaState, command: CompensationCommand, **changes: object
) -> tuple[Compensation, ...]:
    return tuple(
        dataclasses.replace(c, **changes) if c.command == command else c  # type: ignore[arg-type]
        for c in state.compensations
    )


def evolve(state: SagaState, fact: Fact) -> SagaState:
    """The state after ``fact``. Pure; the only way a state changes."""
    return dataclasses.replace(state, **_changes(state, fact))  # type: ignore[arg-type]


# Long: one case per fact kind; the whole fold reads in one place, as a match.
def _changes(state: SagaState, fact: Fact) -> dict[str, object]:
    """The fields ``fact`` changes in ``state`` (which :func:`fold` passes as a mutable draft
    with the same attributes)."""
    changes: dict[str, object] = {}
    match fact:
        case SagaStarted():
            changes.update(
                definition_version=fact.definition_version,
                steps=fact.steps,
                correlation_id=fact.correlation_id,
            )
        case OrderSeen():
            changes.update(
                customer_id=fact.customer_id,
                total_minor=fact.total_minor,
                currency=fact.currency,
                placed_at=fact.at,
            )
        case StockReserved():
            changes.update(reservation_id=fact.reservation_id, reserved_at=fact.at)
        case StockUnavailable():
            changes.update(out_of_stock=fact.reason)
        case ApprovalRequested():
            changes.update(approval_requested_at=fact.at, approval_expires_at=fact.expires_at)
        case AutoApproved():
            changes.update(approval="approved", approved_by=AUTO_APPROVER, approved_at=fact.at)
        case Approved():
            changes.update(approval="approved", approved_by=fact.approved_by, approved_at=fact.at)
        case Rejected():
            changes.update(
                approval="rejected", rejected_by=fact.rejected_by, rejection_reason=fact.reason
            )
        case ApprovalTimedOut():
            changes.update(
                approval="rejected", rejected_by=PRODUCER, rejection_reason=APPROVAL_TIMEOUT
            )
        case ApprovalEscalated():
            changes.update(approval_escalated=True)
        case PaymentTaken():
            changes.update(
                payment_id=fact.payment_id,
                charged_amount_minor=fact.amount_minor,
                charged_currency=fact.currency,
                charged_at=fact.at,
            )
        case PaymentRefused():
            changes.update(declined=fact.reason)
        case ShipmentBooked():
            changes.update(shipment_id=fact.shipment_id, shipped_at=fact.at)
        case ShipmentNotBooked():
            changes.update(shipment_failure=fact.reason)
        case CustomerUpdated():
            changes.update(crm_updated_at=fact.at)
        case EmailOutcome():
            changes.update(email_outcome=fact.outcome, email_detail=fact.detail)
        case DeadlinePassed():
            changes.update(deadlines_passed=(*state.deadlines_passed, fact.step))
        case CompensationStarted():
            planned = tuple(Compensation(command, fact.reason) for command in fact.plan)
            changes.update(
                cancel_reason=fact.reason,
                cancel_detail=fact.detail,
                compensations=(*state.compensations, *planned),
            )
        case CompensationAdded():
            added = Compensation(fact.command, fact.reason, attempt=1, requested_at=fact.at)
            changes.update(compensations=(*state.compensations, added))
        case CompensationRequested():
            changes.update(
                compensations=_with_compensation(
                    state, fact.command, attempt=fact.attempt, requested_at=fact.at
                )
            )
        case CompensationAcknowledged():
            changes.update(compensations=_with_compensation(state, fact.command, acknowledged=True))
        case CompensationExhausted():
            changes.update(compensations=_with_compensation(state, fact.command, exhausted=True))
        case SagaCompleted():
            changes.update(completed_at=fact.at, notes=fact.notes)
        case SagaCancelled():
            changes.update(cancelled_at=fact.at, cancel_reason=fact.reason)
        case EventIgnored():
            changes.update(ignored=state.ignored + 1)
        case _:
            raise SagaError(f"evolve does not know fact {type(fact).__name__}")
    if fact.event_id is not None:
        changes.update(last_event_id=fact.event_id, seen=state.seen | {fact.event_id})
    changes["version"] = state.version + 1
    return changes


def fold(order_id: str, facts: Iterable[Fact]) -> SagaState:
    """The state of a saga from its whole stream of facts: ``evolve`` applied in turn.

    The coordinator folds a saga's stream on every message, so this applies the changes to a
    mutable draft and builds the frozen state once, instead of copying all of its fields per
    fact (``dataclasses.replace``), which dominated the coordinator's CPU time.
    """
    draft = SimpleNamespace(**_INITIAL_FIELDS, order_id=order_id)
    fields = vars(draft)
    for fact in facts:
        fields.update(_changes(cast(SagaState, draft), fact))
    return SagaState(**fields)
