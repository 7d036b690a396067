"""The generic engine on a saga written only for these tests (the "trip", see trip.py):
parallel join, optional step failure, condition branches, a human task's timeout with both
actions, both deadline kinds, compensation retries and needs-attention, version pinning."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts.catalog import (
    EmailFailed,
    EmailSent,
    InventoryReleased,
    InventoryReservationFailed,
    OrderApproved,
    OrderRejected,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentFailed,
)
from contracts.parts import Shortage
from events.model import Message
from saga_coordinator.engine.decide import decide
from saga_coordinator.errors import SagaError

from .trip import (
    ME,
    T0,
    TRIP,
    Trip,
    as_v2,
    charged,
    picked_up,
    placed,
    reserved,
    scheduled,
    with_knobs,
)


def sent() -> EmailSent:
    return EmailSent(template="order_confirmation", message_id="m-1", sent_at=T0)


def paid_trip(total: int = 2_599) -> Trip:
    """A trip that held, was approved by policy, and is charged."""
    trip = Trip()
    trip.send(placed(total))
    trip.send(reserved())
    trip.send(picked_up())
    trip.send(charged())
    return trip


def test_the_happy_path_runs_every_step_and_the_parallel_branches_join():
    trip = Trip()
    trip.send(placed())
    assert trip.state.status(TRIP) == "booked"
    assert trip.state.current(TRIP) == "hold"
    trip.send(reserved())
    # Below the threshold the policy approves at once; pay's turn comes.
    assert trip.emitted_types() == ["order.approved"]
    assert trip.state.status(TRIP) == "held"
    assert set(trip.timers) == {"pickup:pay"}
    trip.send(picked_up())
    assert set(trip.timers) == {"deadline:pay"}
    trip.send(charged())
    assert trip.state.status(TRIP) == "paid"
    assert set(trip.timers) == {"deadline:ship", "deadline:mail"}
    trip.send(scheduled())
    assert trip.state.completed_at is None, "the join waits for the mail branch"
    trip.send(sent())
    assert trip.state.status(TRIP) == "completed"
    assert trip.emitted_types() == ["order.approved", "order.completed"]
    assert trip.timers == {}
    assert trip.state.data["hold_id"] == "res-1"


def test_the_branches_join_whichever_ends_first():
    trip = paid_trip()
    trip.send(sent())
    assert trip.state.completed_at is None
    trip.send(scheduled())
    assert trip.state.status(TRIP) == "completed"


def test_an_optional_step_that_fails_leaves_a_note_and_the_saga_completes():
    trip = paid_trip()
    trip.send(EmailFailed(template="order_confirmation", reason="bounced", permanent=True,
                          failed_at=T0))  # fmt: skip
    trip.send(scheduled())
    assert trip.state.status(TRIP) == "completed"
    assert trip.emitted[-1].notes == ("mail failed: bounced",)  # type: ignore[attr-defined]


def test_an_optional_step_that_times_out_leaves_a_note():
    trip = paid_trip()
    trip.send(scheduled())
    trip.wait(5)
    assert trip.state.status(TRIP) == "completed"
    assert trip.emitted[-1].notes == ("mail timed_out: no answer within 5s",)  # type: ignore[attr-defined]


def test_the_condition_sends_a_large_trip_to_a_person_who_approves_it():
    trip = Trip()
    trip.send(placed(250_000))
    trip.send(reserved())
    assert trip.emitted_types() == ["order.approval_requested"]
    assert trip.state.status(TRIP) == "checking"
    assert trip.state.current(TRIP) == "check"
    assert set(trip.timers) == {"deadline:check"}
    trip.send(OrderApproved(approved_by="ann", approved_at=T0))
    assert trip.state.data["checked_by"] == "ann"
    assert set(trip.timers) == {"pickup:pay"}


def test_a_person_rejects_and_the_hold_is_undone():
    trip = Trip()
    trip.send(placed(250_000))
    trip.send(reserved())
    trip.send(OrderRejected(rejected_by="ann", reason="fraud", rejected_at=T0))
    assert trip.emitted_types()[-1] == "inventory.release"
    trip.send(InventoryReleased(reservation_id="res-1", released_at=T0))
    assert trip.state.status(TRIP) == "cancelled"
    assert trip.emitted[-1].detail == "rejected: no by ann"  # type: ignore[attr-defined]


def test_an_unanswered_task_is_rejected_when_the_definition_says_reject():
    trip = Trip()
    trip.send(placed(250_000))
    trip.send(reserved())
    trip.wait(60)
    assert trip.emitted_types()[-2:] == ["order.rejected", "inventory.release"]
    assert trip.state.cancel_reason == "timed_out"
    assert trip.state.cancel_detail == "no check within 60s"


def test_an_unanswered_task_is_escalated_when_the_definition_says_escalate():
    trip = Trip(with_knobs(check_timeout_action="escalate"))
    trip.send(placed(250_000))
    trip.send(reserved())
    trip.wait(60)
    assert trip.emitted_types()[-1] == "order.needs_attention"
    assert trip.state.status(trip.definition) == "needs_attention"
    assert trip.timers == {}, "it keeps waiting, with no deadline"
    trip.send(OrderApproved(approved_by="ops", approved_at=T0))
    assert trip.state.status(trip.definition) == "held"
    assert set(trip.timers) == {"pickup:pay"}


def test_a_participant_that_never_takes_its_step_up_fails_it_at_the_pick_up_deadline():
    trip = Trip()
    trip.send(placed())
    trip.send(reserved())
    trip.wait(3)
    assert trip.state.cancel_reason == "pay_timeout"
    assert trip.state.cancel_detail == "pay deadline: not taken up within 3s"
    assert trip.emitted_types()[-1] == "inventory.release"


def test_the_answer_deadline_runs_from_the_started_signal():
    trip = Trip()
    trip.send(placed())
    trip.send(reserved())
    trip.wait(2)
    trip.send(picked_up())  # taken up late in its pick-up window: the answer clock starts now
    trip.wait(9)
    assert trip.state.cancel_reason is None
    trip.wait(1)
    assert trip.state.cancel_reason == "pay_timeout"
    assert trip.state.cancel_detail == "pay deadline: no answer within 10s"


def test_a_failure_undoes_the_steps_that_succeeded_newest_first():
    trip = paid_trip()
    trip.send(ShipmentFailed(reason="no carrier", country_code="AQ", failed_at=T0))
    assert trip.emitted_types()[-1] == "payment.refund"
    assert trip.state.status(TRIP) == "compensating"
    trip.send(PaymentRefunded(payment_id="pay-1", amount_minor=2_599, currency="EUR",
                              refunded_at=T0))  # fmt: skip
    assert trip.emitted_types()[-1] == "inventory.release"
    trip.send(InventoryReleased(reservation_id="res-1", released_at=T0))
    assert trip.state.status(TRIP) == "cancelled"
    assert trip.state.cancel_reason == "ship_failed"


def test_an_unacknowledged_compensation_is_retried_then_needs_attention_then_resumes():
    trip = paid_trip()
    trip.send(PaymentDeclined(reason="x", declined_at=T0))  # ignored: pay already succeeded
    assert trip.state.cancel_reason is None
    trip.send(ShipmentFailed(reason="no carrier", country_code="AQ", failed_at=T0))
    trip.wait(2)
    assert trip.emitted[-1].reason == "ship_failed (attempt 2)"  # type: ignore[attr-defined]
    trip.wait(2)
    assert trip.emitted_types()[-1] == "order.needs_attention"
    assert trip.state.status(TRIP) == "needs_attention"
    assert trip.timers == {}
    trip.send(PaymentRefunded(payment_id="pay-1", amount_minor=2_599, currency="EUR",
                              refunded_at=T0))  # fmt: skip
    assert trip.emitted_types()[-1] == "inventory.release"
    assert trip.state.status(TRIP) == "compensating"


def test_a_success_after_the_saga_gave_up_is_undone_at_once():
    trip = Trip()
    trip.send(placed())
    trip.wait(5)  # the hold deadline: cancelled, nothing to undo yet
    assert trip.state.status(TRIP) == "cancelled"
    trip.send(reserved())  # the late reservation must be released
    assert trip.emitted_types()[-1] == "inventory.release"
    assert trip.emitted[-1].reason == "late inventory.reserved (no_stock)"  # type: ignore[attr-defined]
    trip.send(InventoryReleased(reservation_id="res-1", released_at=T0))
    assert trip.state.undo("hold").acknowledged


def test_a_failure_after_success_or_a_repeat_changes_nothing():
    trip = Trip()
    first = Message.first(placed(), saga_type="order", saga_key="trip-1", producer="shop")
    trip.redeliver(first)
    assert trip.redeliver(first).facts == ()
    trip.send(reserved())
    before = trip.state
    failed = InventoryReservationFailed(
        reason="out", unavailable=(Shortage(sku="SKU-1", requested=1, available=0),)
    )
    decision = trip.send(failed)
    assert [x.kind for x in decision.facts] == ["event.ignored"]
    assert trip.state.steps == before.steps


def test_the_coordinators_own_approval_coming_back_is_not_a_second_decision():
    trip = Trip()
    trip.send(placed())
    trip.send(reserved())
    decision = trip.send(OrderApproved(approved_by="policy", approved_at=T0), producer=ME)
    assert decision.facts == ()


def test_a_saga_finishes_on_the_version_it_started_with():
    trip = Trip()
    trip.send(placed())
    v2 = as_v2(start_status="planned")
    message = Message.first(reserved(), saga_type="order", saga_key="trip-1", producer="x")
    with pytest.raises(SagaError, match="runs on v1, not v2"):
        decide(trip.state, message, v2, trip.now, ME)
    fresh = decide(
        Trip(v2).state,
        Message.first(placed(), saga_type="order", saga_key="t2", producer="x"),
        v2,
        T0,
        ME,
    )
    assert fresh.state.definition_version == 2
    assert fresh.state.status(v2) == "planned"


def test_knobs_tune_the_running_definition():
    trip = Trip(with_knobs(hold_deadline=timedelta(seconds=30)))
    trip.send(placed())
    assert trip.timers == {"deadline:hold": T0 + timedelta(seconds=30)}
