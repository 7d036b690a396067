"""A saga written only for the engine's tests, and a driver that runs it through the engine.

The "trip" saga: ``hold`` (stock) → ``check`` (a person, when the total reaches 1,000.00) →
``pay`` (with a pick-up deadline: the participant says it started, here with
``crm.customer_updated``, a catalog event standing in for any started signal) → ``ship``
(critical) and ``mail`` (optional) in parallel; the saga completes when both are resolved.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.catalog import (
    CATALOG,
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
    ShipmentFailed,
    ShipmentScheduled,
)
from contracts.parts import ReservedItem
from contracts.samples import sample_order_placed
from events.model import Event, Message
from saga_coordinator.engine import facts as f
from saga_coordinator.engine.decide import Decision, decide
from saga_coordinator.engine.state import SagaState, fold
from saga_coordinator.engine.timing import CancelTimer, ScheduleTimer, TimerFired, desired_timers
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

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ME = "coordinator"
THRESHOLD = Knob("threshold", 100_000)
HOLD_DEADLINE = Knob("hold_deadline", timedelta(seconds=5))


def _reason(e: Emit) -> str:
    return e.reason if e.attempt == 1 else f"{e.reason} (attempt {e.attempt})"


TRIP = SagaDefinition(
    saga_type="trip",
    version=1,
    key="trip_id",
    start=on(OrderPlaced, capture={"total": "total_minor", "currency": "currency"}),
    nodes=[
        Step(
            "hold",
            succeeded_on=[on(InventoryReserved, capture={"hold_id": "reservation_id"})],
            fails=[Fails(on(InventoryReservationFailed), "no_stock")],
            deadlines=Deadlines(
                answer=Knob("hold_deadline", timedelta(seconds=5)), reason="no_stock"
            ),
            compensation=Compensation(
                InventoryRelease,
                lambda e: InventoryRelease(reason=_reason(e), requested_at=e.at),
                InventoryReleased,
                ack_timeout=timedelta(seconds=2),
                max_attempts=2,
            ),
            milestone="held",
        ),
        HumanTask(
            "check",
            after=["hold"],
            when=Condition(
                "total ≥ threshold", lambda d, k: d["total"] >= k["threshold"], knobs=[THRESHOLD]
            ),
            request=lambda e: OrderApprovalRequested(
                total_minor=e.data["total"],
                currency=e.data["currency"],
                threshold_minor=e.knobs["threshold"],
                requested_at=e.at,
                expires_at=e.at + timedelta(seconds=60),
            ),
            auto=lambda e: OrderApproved(approved_by="policy", approved_at=e.at),
            approve_on=on(OrderApproved, capture={"checked_by": "approved_by"}),
            reject_on=Fails(
                on(OrderRejected, detail=lambda r: f"no by {r.rejected_by}"), "rejected"
            ),
            timeout=timedelta(seconds=60),
            on_timeout=Knob("check_timeout_action", "reject"),
            timeout_event=lambda e: OrderRejected(rejected_by=ME, reason="late", rejected_at=e.at),
            timeout_reason="timed_out",
            waiting_status="checking",
        ),
        Step(
            "pay",
            triggered_by=on(OrderApproved),
            after=["check"],
            started_on=on(CrmCustomerUpdated),
            succeeded_on=[on(PaymentCharged, capture={"paid": "amount_minor"})],
            fails=[Fails(on(PaymentDeclined), "declined")],
            deadlines=Deadlines(
                pick_up=timedelta(seconds=3), answer=timedelta(seconds=10), reason="pay_timeout"
            ),
            compensation=Compensation(
                PaymentRefund,
                lambda e: PaymentRefund(
                    amount_minor=e.data["paid"],
                    currency="EUR",
                    reason=_reason(e),
                    requested_at=e.at,
                ),
                PaymentRefunded,
                ack_timeout=timedelta(seconds=2),
                max_attempts=2,
            ),
            milestone="paid",
        ),
        Step(
            "ship",
            triggered_by=on(PaymentCharged),
            after=["pay"],
            succeeded_on=[on(ShipmentScheduled)],
            fails=[Fails(on(ShipmentFailed), "ship_failed")],
            deadlines=Deadlines(answer=timedelta(seconds=5), reason="ship_failed"),
        ),
        Step(
            "mail",
            triggered_by=on(PaymentCharged),
            after=["pay"],
            succeeded_on=[on(EmailSent)],
            fails=[Fails(on(EmailFailed), "mail failed")],
            critical=False,
            deadlines=Deadlines(answer=timedelta(seconds=5)),
        ),
    ],
    endings=Endings(
        completed=lambda e: OrderCompleted(completed_at=e.at, notes=e.notes),
        cancelled=lambda e: OrderCancelled(
            reason="out_of_stock", detail=f"{e.reason}: {e.detail}", cancelled_at=e.at
        ),
        needs_attention=lambda e: OrderNeedsAttention(
            step=e.step, reason=e.reason, detected_at=e.at
        ),
    ),
    reasons=["no_stock", "rejected", "timed_out", "declined", "pay_timeout", "ship_failed"],
    catalog=CATALOG,
    start_status="booked",
)


def placed(total: int = 2_599) -> OrderPlaced:
    return sample_order_placed(skus=(("SKU-1", 1, total),))


def reserved() -> InventoryReserved:
    items = (ReservedItem(sku="SKU-1", quantity=1),)
    return InventoryReserved(reservation_id="res-1", items=items, reserved_at=T0)


def charged(amount: int = 2_599) -> PaymentCharged:
    return PaymentCharged(payment_id="pay-1", amount_minor=amount, currency="EUR", charged_at=T0)


def scheduled() -> ShipmentScheduled:
    return ShipmentScheduled(shipment_id="shp-1", carrier="c", country_code="DE", scheduled_at=T0)


def picked_up() -> CrmCustomerUpdated:
    return CrmCustomerUpdated(
        customer_id="c-1", orders_count=1, lifetime_value_minor=0, currency="EUR", updated_at=T0
    )


class Trip:
    """One trip saga driven through the engine: messages in, time passing, timers kept.

    After every decision it checks what the coordinator relies on: the state is the fold of
    the facts, every fact survives its storage format, and the kept timers are the ones the
    state calls for.
    """

    def __init__(
        self, definition: SagaDefinition = TRIP, key: str = "trip-1", producer: str = ME
    ) -> None:
        self.definition = definition
        self.key = key
        self.producer = producer
        self.now = T0
        self.state = SagaState(key)
        self.facts: list[f.Fact] = []
        self.emitted: list[Event] = []
        self.timers: dict[str, datetime] = {}

    def send(self, event: Event, producer: str = "participant") -> Decision:
        message = Message.first(event, saga_type="order", saga_key=self.key, producer=producer)
        return self.redeliver(message)

    def redeliver(self, message: Message[Event]) -> Decision:
        decision = decide(self.state, message, self.definition, self.now, self.producer)
        return self._apply(decision, message)

    def wait(self, seconds: float) -> list[Decision]:
        """Let time pass, firing the timers that come due, in due order."""
        until = self.now + timedelta(seconds=seconds)
        decisions = []
        while due := sorted((at, n) for n, at in self.timers.items() if at <= until):
            at, name = due[0]
            self.now = max(self.now, at)
            fired = TimerFired(self.key, name, at)
            decision = decide(self.state, fired, self.definition, self.now, self.producer)
            decisions.append(self._apply(decision))
        self.now = until
        return decisions

    def emitted_types(self) -> list[str]:
        return [e.event_type for e in self.emitted]

    def _apply(self, decision: Decision, message: Any = None) -> Decision:
        self.state = decision.state
        self.facts.extend(decision.facts)
        self.emitted.extend(decision.events)
        for op in decision.timers:
            if isinstance(op, ScheduleTimer):
                self.timers[op.name] = op.due_at
            elif isinstance(op, CancelTimer):
                self.timers.pop(op.name, None)
        stored = [f.parse(x.kind, x.data(), at=x.at, event_id=x.event_id) for x in self.facts]
        assert stored == self.facts
        assert fold(self.key, stored) == self.state
        assert self.timers == desired_timers(self.state, self.definition)
        return decision


def with_knobs(**knobs: Any) -> SagaDefinition:
    return TRIP.with_knobs(knobs)


def as_v2(**changes: Any) -> SagaDefinition:
    return dataclasses.replace(TRIP, version=2, **changes)
