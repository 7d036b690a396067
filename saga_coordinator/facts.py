"""The order saga's facts as stored before saga definitions, one immutable record each.

The coordinator no longer writes these kinds; :mod:`saga_coordinator.legacy` reads them as the
engine's facts, so that sagas stored before the upgrade finish. Documented as they were written:
a saga's state was the fold of its facts, so a fact holds exactly what later decisions need,
in JSON-safe fields (they are stored as ``jsonb``). Two families:

* **observations** of events from other processes (``reserved``, ``charged``, ...): they emit
  nothing;
* **decisions** of the coordinator (``auto_approved``, ``compensation_requested``,
  ``cancelled``, ...): each rendered to exactly one emitted event or command.

``kind`` names a fact in storage; a released kind and its fields are never changed (add a new
kind instead), because old sagas are folded from old rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from contracts.catalog import CancelReason
from contracts.order import CompensationCommand
from saga_coordinator.errors import SagaError

EmailOutcomeKind: TypeAlias = Literal["sent", "failed", "deadline"]
"""How the confirmation email ended; ``deadline``: nobody said before the email deadline."""

FACT_TYPES: dict[str, type[Fact]] = {}
"""Stored ``kind`` → fact model; filled as the classes below are declared."""


class Fact(BaseModel):
    """Base of every fact.

    Attributes:
        at: When the coordinator recorded it (its clock, not the event's ``occurred_at``:
            deadlines are measured on one clock).
        event_id: The incoming message it came from (observations, and decisions taken while
            handling it); ``None`` for facts a timer caused. Used to drop redelivered messages.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str]
    at: datetime
    event_id: uuid.UUID | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if not isinstance(kind, str):
            raise TypeError(f"fact {cls.__name__} must set kind")
        if kind in FACT_TYPES:
            raise TypeError(f"fact kind {kind!r} declared twice")
        FACT_TYPES[kind] = cls

    def data(self) -> dict[str, Any]:
        """The fields stored in ``data`` (``at`` and ``event_id`` have their own columns)."""
        return self.model_dump(mode="json", exclude={"at", "event_id"})


def parse_fact(
    kind: str, data: Mapping[str, Any], *, at: datetime, event_id: uuid.UUID | None
) -> Fact:
    """Rebuild a stored fact."""
    try:
        model = FACT_TYPES[kind]
    except KeyError:
        raise SagaError(f"unknown saga fact kind {kind!r}") from None
    return model.model_validate({**data, "at": at, "event_id": event_id})


# --------------------------------------------------------------------------- lifecycle


class SagaStarted(Fact):
    """The first fact of every saga: which definition it runs on, and its flow's correlation.

    ``steps`` repeats the definition's step list so that readers of the stream without the code
    (projections, replay tools) know what the saga waits for; decisions use the definition.
    """

    kind: ClassVar[str] = "started"
    definition_version: int
    steps: tuple[str, ...]
    correlation_id: str


class SagaCompleted(Fact):
    """Decision: every step succeeded. Renders `order.completed`."""

    kind: ClassVar[str] = "completed"
    notes: tuple[str, ...] = ()


class SagaCancelled(Fact):
    """Decision: every compensation is acknowledged. Renders `order.cancelled`."""

    kind: ClassVar[str] = "cancelled"
    reason: CancelReason
    detail: str | None = None


class EventIgnored(Fact):
    """An event arrived too late or out of place to change anything; kept for the record."""

    kind: ClassVar[str] = "ignored"
    event_type: str
    why: str


# --------------------------------------------------------------------------- forward steps


class OrderSeen(Fact):
    """Observed `order.placed`: what the approval policy and refunds need."""

    kind: ClassVar[str] = "placed"
    customer_id: str
    total_minor: int
    currency: str


class StockReserved(Fact):
    """Observed `inventory.reserved`."""

    kind: ClassVar[str] = "reserved"
    reservation_id: str


class StockUnavailable(Fact):
    """Observed `inventory.reservation_failed`."""

    kind: ClassVar[str] = "reservation_failed"
    reason: str


class ApprovalRequested(Fact):
    """Decision: the total needs a human. Renders `order.approval_requested`."""

    kind: ClassVar[str] = "approval_requested"
    threshold_minor: int
    expires_at: datetime


class AutoApproved(Fact):
    """Decision: the policy approves the order. Renders `order.approved`."""

    kind: ClassVar[str] = "auto_approved"
    threshold_minor: int
    approval_step: bool = True  # False: the definition has no approval step at all


class Approved(Fact):
    """Observed `order.approved` from someone else (a human, through the CLI)."""

    kind: ClassVar[str] = "approved"
    approved_by: str


class Rejected(Fact):
    """Observed `order.rejected` from someone else."""

    kind: ClassVar[str] = "rejected"
    rejected_by: str
    reason: str


class ApprovalTimedOut(Fact):
    """Decision: nobody answered the approval in time. Renders `order.rejected`."""

    kind: ClassVar[str] = "approval_timed_out"


class ApprovalEscalated(Fact):
    """Decision: the approval expired, an operator must chase it; the saga keeps waiting.
    Renders `order.needs_attention`."""

    kind: ClassVar[str] = "approval_escalated"


class PaymentTaken(Fact):
    """Observed `payment.charged`: what a refund needs."""

    kind: ClassVar[str] = "charged"
    payment_id: str
    amount_minor: int
    currency: str


class PaymentRefused(Fact):
    """Observed `payment.declined`."""

    kind: ClassVar[str] = "declined"
    reason: str


class ShipmentBooked(Fact):
    """Observed `shipment.scheduled`."""

    kind: ClassVar[str] = "shipment_scheduled"
    shipment_id: str


class ShipmentNotBooked(Fact):
    """Observed `shipment.failed`."""

    kind: ClassVar[str] = "shipment_failed"
    reason: str


class CustomerUpdated(Fact):
    """Observed `crm.customer_updated`."""

    kind: ClassVar[str] = "crm_updated"


class EmailOutcome(Fact):
    """Observed `email.sent`/`email.failed` for the confirmation, or its deadline passed."""

    kind: ClassVar[str] = "email_outcome"
    outcome: EmailOutcomeKind
    detail: str | None = None


class DeadlinePassed(Fact):
    """A step's durable deadline expired before its answer came (leads to compensation)."""

    kind: ClassVar[str] = "deadline_passed"
    step: str


# --------------------------------------------------------------------------- compensation


class CompensationStarted(Fact):
    """Decision: the saga failed; undo ``plan`` in this order (newest step first)."""

    kind: ClassVar[str] = "compensation_started"
    reason: CancelReason
    detail: str | None = None
    plan: tuple[CompensationCommand, ...]


class CompensationAdded(Fact):
    """Decision: a late success (e.g. a charge after the payment timeout) must be undone too;
    sent at once, beside whatever is in flight. Renders the command (attempt 1)."""

    kind: ClassVar[str] = "compensation_added"
    command: CompensationCommand
    reason: str


class CompensationRequested(Fact):
    """Decision: send (or send again) a compensating command. Renders the command."""

    kind: ClassVar[str] = "compensation_requested"
    command: CompensationCommand
    attempt: int


class CompensationAcknowledged(Fact):
    """Observed the acknowledgement of a compensating command (e.g. `inventory.released`)."""

    kind: ClassVar[str] = "compensation_acknowledged"
    command: CompensationCommand


class CompensationExhausted(Fact):
    """Decision: a command went unacknowledged ``attempts`` times; an operator must step in.
    Renders `order.needs_attention`. A late acknowledgement still resumes the saga."""

    kind: ClassVar[str] = "compensation_exhausted"
    command: CompensationCommand
    attempts: int
