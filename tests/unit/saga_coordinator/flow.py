"""Test helpers: events of one order's flow, and a driver that runs the pure saga core.

The driver feeds messages and the passing of time to :func:`decide`, keeps the timers the
decisions ask for, and after every decision checks the invariants the rest of the coordinator
relies on: the state is the fold of the facts, every fact survives its storage format, and the
timers kept equal the timers the state calls for.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from contracts.catalog import (
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
from contracts.parts import ReservedItem, Shortage
from contracts.samples import sample_order_placed
from events.model import Envelope, Event, Message
from saga_coordinator.engine.timing import CancelTimer, ScheduleTimer, TimerFired
from saga_coordinator.facts import Fact, parse_fact
from tests.unit.saga_coordinator.old_core.deadlines import desired_timers
from tests.unit.saga_coordinator.old_core.definition import V1, SagaDefinition
from tests.unit.saga_coordinator.old_core.saga import Decision, decide
from tests.unit.saga_coordinator.old_core.state import SagaState, fold

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
SMALL = 2_599  # below the default approval threshold
LARGE = 250_000  # above it


def placed(total: int = SMALL) -> OrderPlaced:
    return sample_order_placed(skus=(("SKU-1", 1, total),))


def reserved() -> InventoryReserved:
    return InventoryReserved(
        reservation_id="res-1", items=(ReservedItem(sku="SKU-1", quantity=1),), reserved_at=T0
    )


def out_of_stock() -> InventoryReservationFailed:
    return InventoryReservationFailed(
        reason="out_of_stock", unavailable=(Shortage(sku="SKU-1", requested=1, available=0),)
    )


def approved(by: str = "ops-7") -> OrderApproved:
    return OrderApproved(approved_by=by, approved_at=T0)


def rejected(by: str = "ops-7", reason: str = "looks like fraud") -> OrderRejected:
    return OrderRejected(rejected_by=by, reason=reason, rejected_at=T0)


def charged(amount: int = SMALL) -> PaymentCharged:
    return PaymentCharged(payment_id="pay-1", amount_minor=amount, currency="EUR", charged_at=T0)


def declined() -> PaymentDeclined:
    return PaymentDeclined(reason="card_expired", declined_at=T0)


def scheduled() -> ShipmentScheduled:
    return ShipmentScheduled(shipment_id="shp-1", carrier="DHL", country_code="DE", scheduled_at=T0)


def shipment_failed() -> ShipmentFailed:
    return ShipmentFailed(reason="country not served", country_code="DE", failed_at=T0)


def crm_updated() -> CrmCustomerUpdated:
    return CrmCustomerUpdated(
        customer_id="cust-0001",
        orders_count=1,
        lifetime_value_minor=SMALL,
        currency="EUR",
        updated_at=T0,
    )


def email_sent(template: str = "order_confirmation") -> EmailSent:
    return EmailSent.model_validate({"template": template, "message_id": "msg-1", "sent_at": T0})


def email_failed() -> EmailFailed:
    return EmailFailed(
        template="order_confirmation", reason="mailbox full", permanent=True, failed_at=T0
    )


def released() -> InventoryReleased:
    return InventoryReleased(reservation_id="res-1", released_at=T0)


def refunded(amount: int = SMALL) -> PaymentRefunded:
    return PaymentRefunded(payment_id="pay-1", amount_minor=amount, currency="EUR", refunded_at=T0)


def shipment_cancelled() -> ShipmentCancelled:
    return ShipmentCancelled(shipment_id="shp-1", cancelled_at=T0)


def message(
    event: Event,
    *,
    order_id: str = "ord-1",
    producer: str = "test",
    correlation_id: str = "corr-1",
    at: datetime = T0,
) -> Message[Event]:
    return Message(
        Envelope(
            event_id=uuid.uuid4(),
            event_type=event.event_type,
            saga_type="order",
            saga_key=order_id,
            correlation_id=correlation_id,
            causation_id=None,
            occurred_at=at,
            producer=producer,
            schema_version=event.schema_version,
        ),
        event,
    )


def types(events: list[Event] | tuple[Event, ...]) -> list[str]:
    return [e.event_type for e in events]


class Driver:
    """One saga run through the pure core, with a clock and timers."""

    def __init__(self, definition: SagaDefinition = V1, order_id: str = "ord-1") -> None:
        self.definition = definition
        self.order_id = order_id
        self.state = SagaState(order_id)
        self.now = T0
        self.facts: list[Fact] = []
        self.emitted: list[Event] = []
        self.timers: dict[str, datetime] = {}

    def send(self, event: Event, *, producer: str = "test") -> Decision:
        """Deliver ``event`` as a new message; returns the decision."""
        return self.deliver(message(event, order_id=self.order_id, producer=producer, at=self.now))

    def deliver(self, msg: Message[Event]) -> Decision:
        return self._apply(decide(self.state, msg, self.definition, self.now))

    def advance(self, delta: timedelta) -> list[Event]:
        """Let ``delta`` pass, firing due timers in due order; returns what they emitted."""
        target = self.now + delta
        emitted: list[Event] = []
        while True:
            due = sorted((at, name) for name, at in self.timers.items() if at <= target)
            if not due:
                break
            at, name = due[0]
            self.now = max(self.now, at)
            fired = TimerFired(self.order_id, name, at)
            emitted.extend(self._apply(decide(self.state, fired, self.definition, self.now)).events)
        self.now = target
        return emitted

    def _apply(self, decision: Decision) -> Decision:
        for op in decision.timers:
            if isinstance(op, ScheduleTimer):
                self.timers[op.name] = op.due_at
            else:
                assert isinstance(op, CancelTimer)
                self.timers.pop(op.name, None)
        self.state = decision.state
        self.facts.extend(decision.facts)
        self.emitted.extend(decision.events)
        # Invariants: state = fold(facts); facts survive storage; timers = what state wants.
        assert fold(self.order_id, self.facts) == self.state
        for fact in decision.facts:
            stored = orjson.loads(orjson.dumps(fact.data()))
            assert parse_fact(fact.kind, stored, at=fact.at, event_id=fact.event_id) == fact
        assert self.timers == desired_timers(self.state, self.definition)
        return decision

    @property
    def status(self) -> str:
        """The saga's status (as ``str``: repeated comparisons in a test must not narrow)."""
        return self.state.status

    def kinds(self) -> list[str]:
        return [f.kind for f in self.facts]
