"""The order saga's durable timers, derived from its state. No I/O here.

:func:`desired_timers` says which deadlines and acknowledgement timeouts a state needs and
when they are due; :func:`timer_ops` turns the difference before/after a decision into the
operations the store applies. A due timer comes back to the saga as a :class:`TimerFired`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from saga_coordinator.definition import SagaDefinition
from saga_coordinator.state import SagaState


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


def timer_ops(
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
