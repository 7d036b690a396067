"""The old order core's durable timers, derived from its state (see saga_coordinator/saga.py).

The running coordinator uses the engine's (:mod:`saga_coordinator.engine.timing`); this stays
as part of the reference the engine is checked against.
"""

from __future__ import annotations

from datetime import datetime

from saga_coordinator.engine.timing import ack_timer, deadline_timer
from tests.unit.saga_coordinator.old_core.definition import SagaDefinition
from tests.unit.saga_coordinator.old_core.state import SagaState


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
