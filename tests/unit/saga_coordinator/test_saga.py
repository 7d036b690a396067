"""The pure saga core: every path of the order saga through ``decide`` and ``evolve``."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from contracts.catalog import (
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
from saga_coordinator.engine.state import fold as fold_generic
from saga_coordinator.engine.timing import CancelTimer, TimerFired
from saga_coordinator.errors import (
    InvalidDefinitionError,
    SagaError,
    UnknownDefinitionError,
)
from saga_coordinator.facts import SagaStarted
from saga_coordinator.legacy import upcast
from saga_coordinator.timers import saga_message
from sagas.order import V1 as ORDER
from tests.unit.saga_coordinator.old_core.definition import V1, DefinitionRegistry, SagaDefinition
from tests.unit.saga_coordinator.old_core.saga import decide
from tests.unit.saga_coordinator.old_core.state import (
    AUTO_APPROVER,
    PRODUCER,
    SagaState,
    evolve,
    fold,
)

from .flow import (
    LARGE,
    SMALL,
    T0,
    Driver,
    approved,
    charged,
    crm_updated,
    declined,
    email_failed,
    email_sent,
    message,
    out_of_stock,
    placed,
    refunded,
    rejected,
    released,
    reserved,
    scheduled,
    shipment_cancelled,
    shipment_failed,
    types,
)

SECOND = timedelta(seconds=1)


def paid_saga(definition: SagaDefinition = V1) -> Driver:
    """A saga that was auto-approved and charged."""
    saga = Driver(definition)
    saga.send(placed())
    saga.send(reserved())
    saga.send(charged())
    assert saga.status == "paid"
    return saga


# --------------------------------------------------------------------------- forward


def test_happy_path_auto_approves_and_completes_when_crm_and_email_are_done():
    saga = Driver()
    assert saga.send(placed()).events == ()
    assert saga.status == "placed"
    assert saga.state.current_step == "inventory"
    assert saga.timers == {"deadline:inventory": T0 + 30 * SECOND}

    decision = saga.send(reserved())
    [approval] = decision.events
    assert isinstance(approval, OrderApproved)
    assert approval.approved_by == AUTO_APPROVER
    assert saga.status == "reserved"
    assert saga.timers == {"deadline:payment": T0 + 30 * SECOND}

    assert saga.send(charged()).events == ()
    assert saga.status == "paid"
    assert set(saga.timers) == {"deadline:shipping"}

    assert saga.send(scheduled()).events == ()
    assert saga.status == "shipped"
    assert set(saga.timers) == {"deadline:crm", "deadline:email"}

    assert saga.send(crm_updated()).events == ()
    assert saga.state.current_step == "email"
    [completed] = saga.send(email_sent()).events
    assert isinstance(completed, OrderCompleted)
    assert completed.notes == ()
    assert saga.status == "completed"
    assert saga.state.current_step is None
    assert saga.timers == {}
    assert saga.kinds()[0] == "started"


def test_the_echo_of_the_auto_approval_changes_nothing():
    saga = Driver()
    saga.send(placed())
    [approval] = saga.send(reserved()).events
    before = saga.state
    echo = saga.send(approval, producer=PRODUCER)
    assert echo.facts == ()
    assert echo.events == ()
    assert saga.state == before


def test_total_at_the_threshold_asks_a_human_and_an_approval_moves_on():
    saga = Driver()
    saga.send(placed(V1.approval_threshold_minor))
    [request] = saga.send(reserved()).events
    assert isinstance(request, OrderApprovalRequested)
    assert request.threshold_minor == 100_000
    assert request.total_minor == 100_000
    assert request.expires_at == T0 + timedelta(days=1)
    assert saga.status == "awaiting_approval"
    assert saga.state.current_step == "approval"
    assert saga.timers == {"deadline:approval": T0 + timedelta(days=1)}

    saga.advance(timedelta(hours=2))
    assert saga.send(approved(), producer="cli").events == ()
    assert saga.status == "reserved"
    assert saga.state.approved_by == "ops-7"
    # The payment deadline runs from the approval, not from the order.
    assert saga.timers == {"deadline:payment": T0 + timedelta(hours=2) + 30 * SECOND}


def test_human_rejection_releases_stock_then_cancels():
    saga = Driver()
    saga.send(placed(LARGE))
    saga.send(reserved())
    [release] = saga.send(rejected(), producer="cli").events
    assert isinstance(release, InventoryRelease)
    assert saga.status == "compensating"
    assert saga.state.cancel_reason == "approval_rejected"
    assert saga.state.current_step == "inventory.release"
    assert set(saga.timers) == {"ack:inventory.release"}

    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "approval_rejected"
    assert "looks like fraud" in (cancelled.detail or "")
    assert saga.status == "cancelled"
    assert saga.state.compensations_done == ("inventory.release",)
    assert saga.timers == {}


def test_approval_timeout_rejects_releases_and_ignores_late_approvals():
    saga = Driver()
    saga.send(placed(LARGE))
    saga.send(reserved())
    emitted = saga.advance(timedelta(days=1))
    assert types(emitted) == ["order.rejected", "inventory.release"]
    rejection = emitted[0]
    assert isinstance(rejection, OrderRejected)
    assert (rejection.rejected_by, rejection.reason) == ("saga-coordinator", "approval_timeout")
    assert saga.state.cancel_reason == "approval_timeout"

    # Our own rejection comes back on the order topic: nothing happens, nothing recorded.
    echo = saga.send(rejection, producer=PRODUCER)
    assert echo.facts == ()
    # A human approving too late: recorded, ignored.
    late = saga.send(approved(), producer="cli")
    assert late.events == ()
    assert [f.kind for f in late.facts] == ["ignored"]
    assert saga.state.ignored == 1
    assert saga.state.approval == "rejected"

    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "approval_timeout"


def test_approval_timeout_with_escalation_needs_attention_and_keeps_waiting():
    escalate = dataclasses.replace(V1, approval_timeout_action="escalate")
    saga = Driver(escalate)
    saga.send(placed(LARGE))
    saga.send(reserved())
    [attention] = saga.advance(timedelta(days=1))
    assert isinstance(attention, OrderNeedsAttention)
    assert attention.step == "approval"
    assert saga.status == "needs_attention"
    assert saga.state.cancel_reason is None
    assert saga.timers == {}  # no rejection, no release, no second escalation
    assert saga.advance(timedelta(days=3)) == []

    assert saga.send(approved(), producer="cli").events == ()
    assert saga.status == "reserved"
    assert set(saga.timers) == {"deadline:payment"}


def test_out_of_stock_cancels_at_once_with_nothing_to_compensate():
    saga = Driver()
    saga.send(placed())
    [cancelled] = saga.send(out_of_stock()).events
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "out_of_stock"
    assert saga.status == "cancelled"
    assert saga.state.compensations == ()
    assert saga.timers == {}


# --------------------------------------------------------------------------- compensation


def test_payment_declined_releases_then_cancels():
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    [release] = saga.send(declined()).events
    assert isinstance(release, InventoryRelease)
    assert release.reason == "payment_declined"
    assert saga.status == "compensating"
    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.reason, cancelled.detail) == ("payment_declined", "card_expired")


def test_payment_deadline_releases_and_cancels_as_payment_timeout():
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    assert saga.advance(29 * SECOND) == []
    [release] = saga.advance(SECOND)
    assert isinstance(release, InventoryRelease)
    assert saga.state.cancel_reason == "payment_timeout"
    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "payment_timeout"


def test_late_charge_while_compensating_is_refunded_and_cancel_waits_for_both_acks():
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    saga.advance(30 * SECOND)  # payment timeout: release in flight
    [refund] = saga.send(charged()).events
    assert isinstance(refund, PaymentRefund)
    assert (refund.payment_id, refund.amount_minor, refund.currency) == ("pay-1", SMALL, "EUR")
    assert set(saga.timers) == {"ack:inventory.release", "ack:payment.refund"}

    assert saga.send(released()).events == ()  # the refund is not acknowledged yet
    assert saga.status == "compensating"
    [cancelled] = saga.send(refunded()).events
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "payment_timeout"
    assert set(saga.state.compensations_done) == {"inventory.release", "payment.refund"}


def test_late_charge_after_cancellation_is_refunded_and_tracked():
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    saga.advance(30 * SECOND)
    saga.send(released())
    assert saga.status == "cancelled"

    [refund] = saga.send(charged()).events
    assert isinstance(refund, PaymentRefund)
    assert set(saga.timers) == {"ack:payment.refund"}
    assert saga.state.current_step == "payment.refund"
    # Unacknowledged, it is sent again like any compensation.
    [again] = saga.advance(10 * SECOND)
    assert isinstance(again, PaymentRefund)
    assert saga.send(refunded()).events == ()  # already cancelled: no second order.cancelled
    assert saga.status == "cancelled"
    assert saga.timers == {}
    assert types(saga.emitted).count("order.cancelled") == 1


def test_shipment_failed_refunds_then_releases_and_cancels_only_after_both_acks():
    saga = paid_saga()
    [refund] = saga.send(shipment_failed()).events
    assert isinstance(refund, PaymentRefund)
    assert saga.state.cancel_reason == "shipment_failed"
    assert [c.command for c in saga.state.compensations] == ["payment.refund", "inventory.release"]

    # A release acknowledgement before the release was even sent changes nothing.
    stray = saga.send(released())
    assert stray.events == ()
    assert [f.kind for f in stray.facts] == ["ignored"]

    [release] = saga.send(refunded()).events
    assert isinstance(release, InventoryRelease)
    assert saga.status == "compensating"
    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.reason, cancelled.detail) == ("shipment_failed", "country not served")
    assert saga.state.compensations_done == ("payment.refund", "inventory.release")


def test_fold_of_the_stream_equals_evolving_fact_by_fact():
    saga = paid_saga()
    saga.send(shipment_failed())
    saga.send(released())  # ignored: counted
    saga.send(refunded())
    saga.send(released())
    stepwise = SagaState(saga.order_id)
    for fact in saga.facts:
        stepwise = evolve(stepwise, fact)
    assert stepwise.status == "cancelled"
    assert stepwise.ignored == 1
    assert fold(saga.order_id, saga.facts) == stepwise == saga.state


def test_shipping_deadline_refunds_and_releases_and_a_late_shipment_is_cancelled():
    saga = paid_saga()
    [refund] = saga.advance(30 * SECOND)
    assert isinstance(refund, PaymentRefund)
    assert saga.state.cancel_reason == "shipment_failed"
    assert "shipping deadline" in (saga.state.cancel_detail or "")
    [cancel] = saga.send(scheduled()).events  # the carrier was booked after all
    assert isinstance(cancel, ShipmentCancel)
    assert cancel.shipment_id == "shp-1"
    assert types(saga.send(refunded()).events) == []  # release waits: shipment.cancel in flight
    [release] = saga.send(shipment_cancelled()).events
    assert isinstance(release, InventoryRelease)
    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert "shipping deadline" in (cancelled.detail or "")


def test_crm_deadline_cancels_shipment_refunds_and_releases_in_that_order():
    saga = paid_saga()
    saga.send(scheduled())
    saga.send(email_sent())
    [cancel] = saga.advance(30 * SECOND)
    assert isinstance(cancel, ShipmentCancel)
    [refund] = saga.send(shipment_cancelled()).events
    assert isinstance(refund, PaymentRefund)
    [release] = saga.send(refunded()).events
    assert isinstance(release, InventoryRelease)
    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "shipment_failed"
    assert "crm deadline" in (cancelled.detail or "")
    # CRM answering now is too late.
    assert [f.kind for f in saga.send(crm_updated()).facts] == ["ignored"]


def test_inventory_deadline_cancels_and_a_late_reservation_is_released():
    saga = Driver()
    saga.send(placed())
    [cancelled] = saga.advance(30 * SECOND)
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "out_of_stock"
    assert "inventory deadline" in (cancelled.detail or "")
    [release] = saga.send(reserved()).events
    assert isinstance(release, InventoryRelease)
    assert "late inventory.reserved" in release.reason
    assert saga.send(released()).events == ()
    assert saga.status == "cancelled"


def test_unacknowledged_compensation_is_retried_then_needs_attention():
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    saga.send(declined())
    retries = saga.advance(40 * SECOND)
    assert types(retries) == ["inventory.release"] * 4  # attempts 2..5
    assert [r.reason for r in retries if isinstance(r, InventoryRelease)] == [
        f"payment_declined (attempt {n})" for n in range(2, 6)
    ]
    assert saga.state.compensation("inventory.release").attempt == 5

    [attention] = saga.advance(10 * SECOND)
    assert isinstance(attention, OrderNeedsAttention)
    assert attention.step == "inventory.release"
    assert "5 attempt" in attention.reason
    assert saga.status == "needs_attention"
    assert saga.timers == {}
    assert saga.advance(timedelta(hours=1)) == []  # never dropped, never spamming

    # The acknowledgement finally arrives: the saga finishes.
    [cancelled] = saga.send(released()).events
    assert isinstance(cancelled, OrderCancelled)
    assert saga.status == "cancelled"


def test_email_failure_completes_with_a_note():
    saga = paid_saga()
    saga.send(scheduled())
    assert saga.send(email_failed()).events == ()
    [completed] = saga.send(crm_updated()).events
    assert isinstance(completed, OrderCompleted)
    assert completed.notes == ("confirmation email failed: mailbox full",)


def test_email_deadline_completes_with_a_note_once_crm_is_done():
    saga = paid_saga()
    saga.send(scheduled())
    saga.send(crm_updated())
    [completed] = saga.advance(15 * SECOND)
    assert isinstance(completed, OrderCompleted)
    assert completed.notes == ("confirmation email outcome unknown: no answer within 15s",)
    # The email service answering afterwards is recorded and ignored.
    assert [f.kind for f in saga.send(email_sent()).facts] == ["ignored"]


def test_email_deadline_before_crm_waits_for_crm_and_a_late_email_outcome_counts():
    saga = paid_saga()
    saga.send(scheduled())
    assert saga.advance(15 * SECOND) == []
    assert saga.state.email_outcome == "deadline"
    assert saga.send(email_sent()).events == ()  # before completion: the real outcome wins
    [completed] = saga.send(crm_updated()).events
    assert isinstance(completed, OrderCompleted)
    assert completed.notes == ()


def test_other_email_templates_are_not_the_confirmation():
    saga = paid_saga()
    saga.send(scheduled())
    assert saga.send(email_sent("approval_requested")).facts == ()
    assert saga.state.email_outcome is None


# --------------------------------------------------------------------------- idempotence, order


def test_a_redelivered_message_changes_nothing():
    saga = Driver()
    saga.send(placed())
    msg = message(reserved())
    assert saga.deliver(msg).events
    before = saga.state
    decision = saga.deliver(msg)  # the same message (same event id) once more
    assert (decision.facts, decision.events, decision.timers) == ((), (), ())
    assert saga.state == before


def test_a_redelivered_late_event_is_recorded_as_ignored_only_once():
    saga = Driver()
    saga.send(placed(LARGE))
    saga.send(reserved())
    saga.advance(timedelta(days=1))
    late = message(approved())
    assert [f.kind for f in saga.deliver(late).facts] == ["ignored"]
    assert saga.deliver(late).facts == ()
    assert saga.state.ignored == 1


def test_the_same_fact_twice_changes_state_once():
    saga = paid_saga()
    before = saga.state
    for event in (placed(), reserved(), charged()):
        decision = saga.send(event)  # new event ids, same facts
        assert (decision.facts, decision.events, decision.timers) == ((), (), ())
    assert saga.state == before
    saga.send(declined())  # contradicts the charge: recorded as ignored, no compensation
    assert saga.state.cancel_reason is None
    saga.send(shipment_failed())
    [refund] = [e for e in saga.emitted if isinstance(e, PaymentRefund)]
    assert refund.payment_id == "pay-1"
    saga.send(refunded())
    saga.send(released())
    saga.send(released())
    assert types(saga.emitted).count("order.cancelled") == 1


def test_events_arriving_out_of_topic_order_still_complete_the_saga():
    saga = Driver()
    # Different topics are consumed concurrently: the reservation may come first.
    assert saga.send(reserved()).events == ()  # no total yet: no approval decision
    [approval] = saga.send(placed()).events
    assert isinstance(approval, OrderApproved)
    saga.send(crm_updated())
    saga.send(scheduled())
    assert saga.status == "shipped"
    saga.send(email_sent())
    assert saga.state.completed_at is None  # the charge was not seen yet
    [completed] = saga.send(charged()).events
    assert isinstance(completed, OrderCompleted)
    assert saga.timers == {}


def test_a_charge_before_the_human_approval_is_seen_means_approved():
    saga = Driver()
    saga.send(placed(LARGE))
    saga.send(reserved())
    saga.send(charged(LARGE))
    assert saga.status == "paid"
    assert "deadline:approval" not in saga.timers
    assert saga.send(approved(), producer="cli").events == ()


def test_a_timer_that_is_no_longer_wanted_is_deleted_without_effect():
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    stale = TimerFired("ord-1", "deadline:inventory", T0 + 30 * SECOND)
    decision = decide(saga.state, stale, V1, T0 + timedelta(minutes=1))
    assert decision.facts == ()
    assert decision.timers == (CancelTimer("deadline:inventory"),)


def test_a_timer_of_an_unknown_saga_is_deleted():
    decision = decide(SagaState("ghost"), TimerFired("ghost", "deadline:crm", T0), V1, T0)
    assert decision.timers == (CancelTimer("deadline:crm"),)
    assert decision.facts == ()


def test_acknowledgements_for_an_unknown_saga_do_not_start_one():
    saga = Driver()
    assert saga.send(released()).facts == ()
    assert not saga.state.started


# --------------------------------------------------------------------------- definitions


V2 = SagaDefinition(
    version=2,
    steps=("inventory", "payment", "shipping", "email"),
    approval_threshold_minor=1_000_000,
)


def test_the_first_fact_pins_the_definition_version():
    saga = Driver(V2)
    saga.send(placed(LARGE))
    first = saga.facts[0]
    assert isinstance(first, SagaStarted)
    assert first.definition_version == 2
    assert first.correlation_id == "corr-1"
    assert first.steps == V2.steps


def test_decide_refuses_a_definition_other_than_the_pinned_one():
    saga = Driver(V1)
    saga.send(placed())
    with pytest.raises(SagaError, match="runs on definition v1"):
        decide(saga.state, TimerFired("ord-1", "deadline:inventory", T0), V2, T0)


def test_versions_differ_in_shape_v2_has_no_approval_and_no_crm():
    saga = paid_saga(V2)
    [approval] = [e for e in saga.emitted if isinstance(e, OrderApproved)]
    assert approval.approved_by == AUTO_APPROVER
    assert "no approval step" in (approval.reason or "")
    saga.send(scheduled())
    assert set(saga.timers) == {"deadline:email"}
    [completed] = saga.send(email_sent()).events
    assert isinstance(completed, OrderCompleted)


def test_registry_pins_running_sagas_and_starts_new_ones_on_the_newest():
    registry = DefinitionRegistry([V1]).register(V2)
    assert registry.current is V2
    assert registry.pinned(None) is V2
    assert registry.pinned(1) is V1
    with pytest.raises(UnknownDefinitionError, match="v7"):
        registry.pinned(7)
    with pytest.raises(InvalidDefinitionError, match="twice"):
        registry.register(V1)


def test_a_v1_saga_keeps_v1_rules_after_v2_is_registered():
    registry = DefinitionRegistry([V1])
    saga = Driver(registry.pinned(None))
    saga.send(placed(LARGE))
    registry = registry.register(V2)  # deployed while the saga runs
    saga.definition = registry.pinned(saga.state.definition_version)
    [request] = saga.send(reserved()).events
    assert isinstance(request, OrderApprovalRequested)  # v2 would have auto-approved


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 0}, "version must be >= 1"),
        ({"steps": ("inventory", "shipping")}, "lack the required"),
        ({"steps": ("payment", "inventory", "shipping")}, "flow order"),
        ({"compensation_max_attempts": 0}, "compensation_max_attempts"),
        ({"email_deadline": timedelta(0)}, "email_deadline must be positive"),
        ({"approval_timeout_action": "shrug"}, "unknown approval_timeout_action"),
    ],
)
def test_invalid_definitions_are_refused_when_declared(changes, message):
    with pytest.raises(InvalidDefinitionError, match=message):
        dataclasses.replace(V1, **changes)


def test_overrides_replace_knobs_in_every_version_but_never_the_shape():
    registry = DefinitionRegistry([V1, V2]).with_overrides({"payment_deadline": 5 * SECOND})
    assert registry.get(1).payment_deadline == registry.get(2).payment_deadline == 5 * SECOND
    assert registry.get(2).steps == V2.steps
    assert registry.get(2).approval_threshold_minor == 1_000_000
    with pytest.raises(InvalidDefinitionError, match="not tunable"):
        V1.with_overrides({"steps": ("inventory", "payment", "shipping")})


# --------------------------------------------------------------------------- envelopes


def test_timer_messages_continue_the_flow_of_the_order():
    saga = Driver()
    saga.send(placed())
    saga.send(reserved())
    last = saga.facts[-1].event_id
    [release] = saga.advance(30 * SECOND)
    # The timer loop's envelope (saga_coordinator.timers) on the state the coordinator folds.
    state = fold_generic("ord-1", [upcast(fact, ORDER) for fact in saga.facts])
    msg = saga_message(state, release, saga.now)
    assert msg.envelope.saga_key == "ord-1"
    assert msg.envelope.correlation_id == "corr-1"
    assert msg.envelope.causation_id == str(last)
    assert msg.envelope.producer == "saga-coordinator"
    assert msg.envelope.event_type == "inventory.release"
    assert msg.envelope.occurred_at.microsecond % 1000 == 0


def test_fold_of_nothing_is_an_unstarted_saga():
    state = fold("ord-9", [])
    assert not state.started
    assert state.version == 0
    assert state.current_step is None
