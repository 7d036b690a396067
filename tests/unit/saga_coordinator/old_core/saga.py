"""The pure core of the order saga: state as a fold of facts, and decisions. No I/O here.

The old order core, no longer used by the running coordinator (it decides with
:mod:`saga_coordinator.engine` on :mod:`sagas.order`): kept as the reference the engine is
checked against (``tests/unit/saga_coordinator/engine/test_order_equivalence.py``).

* :func:`evolve` applies one fact to a :class:`SagaState`; :func:`fold` applies a stream.
* :func:`decide` takes the state, one input (a :class:`~events.model.Message` or a
  :class:`TimerFired`), the saga's pinned :class:`.definition.SagaDefinition`
  and the time, and returns a :class:`Decision`: the new facts, the events/commands to emit and
  the timer operations. The handlers and the timer loop only load, call this, and store.

Decisions depend on the folded state, not on which event just arrived: every input first
becomes facts (observations), then :func:`decide` repeatedly asks "what does this state call
for?" (approve, compensate, complete, ...) until nothing more. That makes the saga indifferent
to the order in which events of different topics arrive (e.g. `shipment.scheduled` before
`payment.charged`), and redelivered or repeated events change nothing: a fact already known is
not recorded twice, and a message id already folded is dropped.

Layers of the pure core: :mod:`.state` (the fold),
:mod:`.deadlines` (the timers a state needs: a decision's timer operations are
the difference before/after), :mod:`.render` (facts as events) and this
module (decisions).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from contracts.catalog import (
    CancelReason,
    CrmCustomerUpdated,
    EmailFailed,
    EmailSent,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderApproved,
    OrderPlaced,
    OrderRejected,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentCancelled,
    ShipmentFailed,
    ShipmentScheduled,
)
from contracts.order import (
    ACKNOWLEDGEMENTS,
    COMPENSATION_ORDER,
    UNDOES,
)
from events.model import Event, Message
from saga_coordinator.engine.timing import CancelTimer, TimerFired, TimerOp, timer_ops
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
from tests.unit.saga_coordinator.old_core.deadlines import desired_timers
from tests.unit.saga_coordinator.old_core.definition import SagaDefinition, StepName
from tests.unit.saga_coordinator.old_core.render import _render
from tests.unit.saga_coordinator.old_core.state import PRODUCER, SagaState, evolve

CONFIRMATION_TEMPLATE = "order_confirmation"
"""The email whose outcome completion waits for; other emails are not the saga's business."""

MAX_DECISIONS_PER_INPUT = 32
"""Guard against a decision rule that never settles (a bug, not a runtime condition)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What one input leads to. ``state`` is the state after ``facts``."""

    state: SagaState
    facts: tuple[Fact, ...] = ()
    events: tuple[Event, ...] = ()
    timers: tuple[TimerOp, ...] = ()


# Long: the decision loop with its start, observe and settle phases, read top to bottom.
def decide(
    state: SagaState,
    incoming: Message[Event] | TimerFired,
    definition: SagaDefinition,
    now: datetime,
) -> Decision:
    """What ``incoming`` leads to, for a saga in ``state`` running on ``definition``.

    ``definition`` must be the saga's pinned version (the current one for a new saga).
    """
    if state.definition_version not in (None, definition.version):
        raise SagaError(
            f"saga {state.order_id} runs on definition v{state.definition_version}, "
            f"not v{definition.version}"
        )
    event_id: uuid.UUID | None = None
    facts: list[Fact]
    if isinstance(incoming, TimerFired):
        if not state.started:
            return Decision(state, timers=(CancelTimer(incoming.name),))
        facts = _on_timer(state, incoming, definition, now)
    else:
        event_id = incoming.envelope.event_id
        if event_id in state.seen:
            return Decision(state)  # redelivered: already folded
        start: list[Fact] = []
        base = state
        if not state.started:
            if incoming.envelope.event_type in ACKNOWLEDGEMENTS:
                return Decision(state)  # acknowledges nothing we sent: no saga to start
            start = [
                SagaStarted(
                    at=now,
                    event_id=event_id,
                    definition_version=definition.version,
                    steps=definition.steps,
                    correlation_id=incoming.envelope.correlation_id,
                )
            ]
            base = evolve(state, start[0])
        observed = _observe(base, incoming, now)
        if not observed:
            return Decision(state)
        facts = [*start, *observed]

    new = state
    events: list[Event] = []
    for fact in facts:
        new = evolve(new, fact)
        events.extend(_render(fact, new, definition))
    for _ in range(MAX_DECISIONS_PER_INPUT):
        decided = _next_decision(new, definition, now, event_id)
        if decided is None:
            break
        facts.append(decided)
        new = evolve(new, decided)
        events.extend(_render(decided, new, definition))
    else:
        raise SagaError(f"saga {state.order_id}: decisions did not settle")

    fired = incoming if isinstance(incoming, TimerFired) else None
    timers = timer_ops(desired_timers(state, definition), desired_timers(new, definition), fired)
    return Decision(new, tuple(facts), tuple(events), timers)


def _ignored(event: Event, why: str, now: datetime, event_id: uuid.UUID) -> list[Fact]:
    return [EventIgnored(at=now, event_id=event_id, event_type=event.event_type, why=why)]


# Long: one case per incoming event type; each case is short and independent.
def _observe(state: SagaState, message: Message[Event], now: datetime) -> list[Fact]:
    """Facts an incoming event establishes; [] when it tells nothing new (a repeat, an echo
    of the coordinator's own decision, another email template)."""
    event = message.event
    eid = message.envelope.event_id
    own = message.envelope.producer == PRODUCER
    late = f"saga is {state.status}"
    match event:
        case OrderPlaced():
            if state.placed_at is not None:
                return []
            return [
                OrderSeen(
                    at=now,
                    event_id=eid,
                    customer_id=event.customer_id,
                    total_minor=event.total_minor,
                    currency=event.currency,
                )
            ]
        case InventoryReserved():
            # Recorded even when late: a reservation after the saga gave up must be released.
            if state.reservation_id is not None:
                return []
            return [StockReserved(at=now, event_id=eid, reservation_id=event.reservation_id)]
        case InventoryReservationFailed():
            if state.out_of_stock is not None:
                return []
            if state.reservation_id is not None:
                return _ignored(event, "stock is already reserved", now, eid)
            if not state.active:
                return _ignored(event, late, now, eid)
            return [StockUnavailable(at=now, event_id=eid, reason=event.reason)]
        case OrderApproved() | OrderRejected():
            if state.approval is not None:
                if own:
                    return []  # the echo of the coordinator's own decision
                return _ignored(event, f"approval already decided: {state.approval}", now, eid)
            if not state.active:
                return _ignored(event, late, now, eid)
            if isinstance(event, OrderApproved):
                return [Approved(at=now, event_id=eid, approved_by=event.approved_by)]
            return [
                Rejected(at=now, event_id=eid, rejected_by=event.rejected_by, reason=event.reason)
            ]
        case PaymentCharged():
            # Recorded even when late: money taken after the saga gave up must be refunded.
            if state.payment_id is not None:
                return []
            return [
                PaymentTaken(
                    at=now,
                    event_id=eid,
                    payment_id=event.payment_id,
                    amount_minor=event.amount_minor,
                    currency=event.currency,
                )
            ]
        case PaymentDeclined():
            if state.declined is not None:
                return []
            if state.payment_id is not None:
                return _ignored(event, "payment is already charged", now, eid)
            if not state.active:
                return _ignored(event, late, now, eid)
            return [PaymentRefused(at=now, event_id=eid, reason=event.reason)]
        case ShipmentScheduled():
            # Recorded even when late: a shipment booked after the saga gave up is cancelled.
            if state.shipment_id is not None:
                return []
            return [ShipmentBooked(at=now, event_id=eid, shipment_id=event.shipment_id)]
        case ShipmentFailed():
            if state.shipment_failure is not None:
                return []
            if state.shipment_id is not None:
                return _ignored(event, "shipment is already scheduled", now, eid)
            if not state.active:
                return _ignored(event, late, now, eid)
            return [ShipmentNotBooked(at=now, event_id=eid, reason=event.reason)]
        case CrmCustomerUpdated():
            if state.crm_updated_at is not None:
                return []
            if not state.active:
                return _ignored(event, late, now, eid)
            return [CustomerUpdated(at=now, event_id=eid)]
        case EmailSent() | EmailFailed():
            if event.template != CONFIRMATION_TEMPLATE:
                return []
            if state.email_outcome in ("sent", "failed"):
                return []
            if not state.active:
                return _ignored(event, late, now, eid)
            if isinstance(event, EmailSent):
                return [EmailOutcome(at=now, event_id=eid, outcome="sent")]
            return [EmailOutcome(at=now, event_id=eid, outcome="failed", detail=event.reason)]
        case InventoryReleased() | PaymentRefunded() | ShipmentCancelled():
            command = ACKNOWLEDGEMENTS[event.event_type]
            entry = state.compensation(command)
            if entry is not None and entry.acknowledged:
                return []
            if entry is None or entry.attempt == 0:
                return _ignored(event, f"no {command} was sent", now, eid)
            return [CompensationAcknowledged(at=now, event_id=eid, command=command)]
    return []


def _on_timer(
    state: SagaState, timer: TimerFired, definition: SagaDefinition, now: datetime
) -> list[Fact]:
    """Facts a due timer establishes; [] if the state no longer wants that timer now."""
    due_at = desired_timers(state, definition).get(timer.name)
    if due_at is None or due_at > now:
        return []
    kind, _, target = timer.name.partition(":")
    if kind == "deadline":
        if target == "approval":
            if definition.approval_timeout_action == "escalate":
                return [ApprovalEscalated(at=now)]
            return [ApprovalTimedOut(at=now)]
        if target == "email":
            seconds = definition.email_deadline.total_seconds()
            return [
                EmailOutcome(at=now, outcome="deadline", detail=f"no answer within {seconds:g}s")
            ]
        return [DeadlinePassed(at=now, step=target)]
    entry = state.compensation(target)
    if kind != "ack" or entry is None:
        raise SagaError(f"saga {state.order_id}: unexpected timer {timer.name!r}")
    if entry.attempt < definition.compensation_max_attempts:
        return [CompensationRequested(at=now, command=entry.command, attempt=entry.attempt + 1)]
    return [CompensationExhausted(at=now, command=entry.command, attempts=entry.attempt)]


def _failure(state: SagaState, d: SagaDefinition) -> tuple[CancelReason, str] | None:
    """Why an active saga must be compensated, if it must."""

    def waited(step: StepName) -> str:
        return f"{step} deadline: no answer within {d.deadline(step).total_seconds():g}s"

    passed = state.deadlines_passed
    if state.out_of_stock is not None:
        return "out_of_stock", state.out_of_stock
    if "inventory" in passed:
        return "out_of_stock", waited("inventory")
    if state.approval == "rejected":
        if state.rejected_by == PRODUCER:
            return "approval_timeout", f"no approval within {d.approval_timeout.total_seconds():g}s"
        return "approval_rejected", f"rejected by {state.rejected_by}: {state.rejection_reason}"
    if state.declined is not None:
        return "payment_declined", state.declined
    if "payment" in passed:
        return "payment_timeout", waited("payment")
    if state.shipment_failure is not None:
        return "shipment_failed", state.shipment_failure
    if "shipping" in passed:
        return "shipment_failed", waited("shipping")
    if "crm" in passed:
        # No reason of the catalog fits "CRM never confirmed"; the shipment is cancelled, so
        # shipment_failed, and the detail says why.
        return "shipment_failed", waited("crm") + "; shipment cancelled"
    return None


# Long: the saga's rules in priority order; splitting them would hide that order.
def _next_decision(
    state: SagaState, d: SagaDefinition, now: datetime, event_id: uuid.UUID | None
) -> Fact | None:
    """The one decision ``state`` calls for next, or None when it calls for nothing."""
    if not state.started:
        return None
    if state.cancel_reason is not None:
        # A success that arrived after the saga gave up is undone at once, beside whatever is
        # in flight: money and stock must not stay held until the sequence reaches it.
        for command in COMPENSATION_ORDER:
            if state.succeeded(command) and state.compensation(command) is None:
                reason = f"late {UNDOES[command]} ({state.cancel_reason})"
                return CompensationAdded(at=now, event_id=event_id, command=command, reason=reason)
        if state.cancelled_at is not None:
            return None
        if any(c.in_flight for c in state.compensations):
            return None
        planned = next((c for c in state.compensations if c.attempt == 0), None)
        if planned is not None:
            return CompensationRequested(
                at=now, event_id=event_id, command=planned.command, attempt=1
            )
        return SagaCancelled(
            at=now, event_id=event_id, reason=state.cancel_reason, detail=state.cancel_detail
        )
    if state.completed_at is not None:
        return None
    failure = _failure(state, d)
    if failure is not None:
        reason, detail = failure
        plan = tuple(c for c in COMPENSATION_ORDER if state.succeeded(c))
        return CompensationStarted(
            at=now, event_id=event_id, reason=reason, detail=detail, plan=plan
        )
    if (
        state.reservation_id is not None
        and state.total_minor is not None
        and state.approval is None
        and state.approval_requested_at is None
        and state.payment_id is None
    ):
        if d.has("approval") and state.total_minor >= d.approval_threshold_minor:
            return ApprovalRequested(
                at=now,
                event_id=event_id,
                threshold_minor=d.approval_threshold_minor,
                expires_at=now + d.approval_timeout,
            )
        return AutoApproved(
            at=now,
            event_id=event_id,
            threshold_minor=d.approval_threshold_minor,
            approval_step=d.has("approval"),
        )
    if (
        state.payment_id is not None
        and state.shipment_id is not None
        and (state.crm_updated_at is not None or not d.has("crm"))
        and (state.email_outcome is not None or not d.has("email"))
    ):
        return SagaCompleted(at=now, event_id=event_id, notes=_completion_notes(state))
    return None


def _completion_notes(state: SagaState) -> tuple[str, ...]:
    if state.email_outcome == "failed":
        return (f"confirmation email failed: {state.email_detail}",)
    if state.email_outcome == "deadline":
        return (f"confirmation email outcome unknown: {state.email_detail}",)
    return ()


__all__ = ["Decision", "decide"]
