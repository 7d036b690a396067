"""The pure core of the order saga: state as a fold of facts, and decisions. No I/O here.

* :func:`evolve` applies one fact to a :class:`SagaState`; :func:`fold` applies a stream.
* :func:`decide` takes the state, one input (a :class:`~events.model.Message` or a
  :class:`TimerFired`), the saga's pinned :class:`~saga_coordinator.definition.SagaDefinition`
  and the time, and returns a :class:`Decision`: the new facts, the events/commands to emit and
  the timer operations. The handlers and the timer loop only load, call this, and store.

Decisions depend on the folded state, not on which event just arrived: every input first
becomes facts (observations), then :func:`decide` repeatedly asks "what does this state call
for?" (approve, compensate, complete, ...) until nothing more. That makes the saga indifferent
to the order in which events of different topics arrive (e.g. `shipment.scheduled` before
`payment.charged`), and redelivered or repeated events change nothing: a fact already known is
not recorded twice, and a message id already folded is dropped.

Timers are derived too: :func:`desired_timers` says which deadlines the state needs and when;
a decision's timer operations are the difference before/after.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Literal, TypeAlias, cast

from events.catalog import (
    APPROVAL_TIMEOUT,
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
from events.model import Envelope, Event, Message
from saga_coordinator import SERVICE_NAME
from saga_coordinator.definition import SagaDefinition, StepName
from saga_coordinator.errors import SagaError
from saga_coordinator.facts import (
    ApprovalEscalated,
    ApprovalRequested,
    ApprovalTimedOut,
    Approved,
    AutoApproved,
    CompensationAcknowledged,
    CompensationAdded,
    CompensationCommand,
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

CONFIRMATION_TEMPLATE = "order_confirmation"
"""The email whose outcome completion waits for; other emails are not the saga's business."""

SagaStatus: TypeAlias = Literal[
    "placed",
    "awaiting_approval",
    "reserved",
    "paid",
    "shipped",
    "completed",
    "compensating",
    "cancelled",
    "needs_attention",
]
"""Where a saga is, for projections and operators."""

COMPENSATION_ORDER: tuple[CompensationCommand, ...] = (
    "shipment.cancel",
    "payment.refund",
    "inventory.release",
)
"""Compensating commands, newest step first: the order compensation undoes steps in."""

ACKNOWLEDGEMENTS: dict[str, CompensationCommand] = {
    "shipment.cancelled": "shipment.cancel",
    "payment.refunded": "payment.refund",
    "inventory.released": "inventory.release",
}
"""Acknowledging event type → the command it acknowledges."""

UNDOES: dict[CompensationCommand, str] = {
    "shipment.cancel": "shipment.scheduled",
    "payment.refund": "payment.charged",
    "inventory.release": "inventory.reserved",
}
"""Command → the event type of the success it undoes."""

MAX_DECISIONS_PER_INPUT = 32
"""Guard against a decision rule that never settles (a bug, not a runtime condition)."""


# --------------------------------------------------------------------------- state


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


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class TimerFired:
    """Input to :func:`decide`: a durable timer of the saga came due."""

    order_id: str
    name: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Create the saga's timer ``name`` or move it to ``due_at``."""

    name: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Delete the saga's timer ``name`` (no error if absent)."""

    name: str


TimerOp: TypeAlias = ScheduleTimer | CancelTimer


@dataclass(frozen=True, slots=True)
class Decision:
    """What one input leads to. ``state`` is the state after ``facts``."""

    state: SagaState
    facts: tuple[Fact, ...] = ()
    events: tuple[Event, ...] = ()
    timers: tuple[TimerOp, ...] = ()


def deadline_timer(step: str) -> str:
    return f"deadline:{step}"


def ack_timer(command: str) -> str:
    return f"ack:{command}"


def desired_timers(state: SagaState, definition: SagaDefinition) -> dict[str, datetime]:
    """The timers the state calls for, by name, with their due time."""
    timers: dict[str, datetime] = {}
    d = definition
    if state.active:
        answered = (
            state.reservation_id is not None
            or state.out_of_stock is not None
            or state.payment_id is not None
            or state.shipment_id is not None
        )
        if state.placed_at is not None and not answered:
            timers[deadline_timer("inventory")] = state.placed_at + d.inventory_deadline
        if (
            state.approval_expires_at is not None
            and state.approval is None
            and not state.approval_escalated
            and state.payment_id is None
        ):
            timers[deadline_timer("approval")] = state.approval_expires_at
        if (
            state.approval == "approved"
            and state.approved_at is not None
            and state.payment_id is None
            and state.declined is None
        ):
            timers[deadline_timer("payment")] = state.approved_at + d.payment_deadline
        if (
            state.charged_at is not None
            and state.shipment_id is None
            and state.shipment_failure is None
        ):
            timers[deadline_timer("shipping")] = state.charged_at + d.shipping_deadline
        if state.shipped_at is not None:
            if d.has("crm") and state.crm_updated_at is None:
                timers[deadline_timer("crm")] = state.shipped_at + d.crm_deadline
            if d.has("email") and state.email_outcome is None:
                timers[deadline_timer("email")] = state.shipped_at + d.email_deadline
    for c in state.compensations:
        if c.in_flight and not c.exhausted and c.requested_at is not None:
            timers[ack_timer(c.command)] = c.requested_at + d.compensation_ack_timeout
    return timers


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
    timers = _timer_ops(desired_timers(state, definition), desired_timers(new, definition), fired)
    return Decision(new, tuple(facts), tuple(events), timers)


def _timer_ops(
    before: dict[str, datetime], after: dict[str, datetime], fired: TimerFired | None
) -> tuple[TimerOp, ...]:
    ops: dict[str, TimerOp] = {}
    for name, due_at in after.items():
        if before.get(name) != due_at:
            ops[name] = ScheduleTimer(name, due_at)
    for name in before:
        if name not in after:
            ops[name] = CancelTimer(name)
    if fired is not None and fired.name not in ops:
        # The fired row itself must end up right even if it was stale (not in `before`) or
        # out of date: gone when no longer wanted, else moved to when it is wanted.
        wanted = after.get(fired.name)
        ops[fired.name] = (
            CancelTimer(fired.name) if wanted is None else ScheduleTimer(fired.name, wanted)
        )
    return tuple(ops.values())


def _ignored(event: Event, why: str, now: datetime, event_id: uuid.UUID) -> list[Fact]:
    return [EventIgnored(at=now, event_id=event_id, event_type=event.event_type, why=why)]


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


# --------------------------------------------------------------------------- rendering


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


def saga_message(state: SagaState, event: Event, now: datetime) -> Message[Event]:
    """Wrap an event the coordinator emits outside a handler (a timer) in an envelope that
    continues the saga's flow: its correlation id, caused by the last event the saga saw."""
    return Message(
        Envelope(
            event_id=uuid.uuid4(),
            event_type=event.event_type,
            order_id=state.order_id,
            correlation_id=state.correlation_id or state.order_id,
            causation_id=str(state.last_event_id) if state.last_event_id is not None else None,
            occurred_at=now.replace(microsecond=now.microsecond // 1000 * 1000),
            producer=PRODUCER,
            schema_version=event.schema_version,
        ),
        event,
    )


__all__ = [
    "ACKNOWLEDGEMENTS",
    "AUTO_APPROVER",
    "COMPENSATION_ORDER",
    "PRODUCER",
    "CancelTimer",
    "Compensation",
    "Decision",
    "SagaState",
    "SagaStatus",
    "ScheduleTimer",
    "TimerFired",
    "TimerOp",
    "ack_timer",
    "deadline_timer",
    "decide",
    "desired_timers",
    "evolve",
    "fold",
    "saga_message",
]
