"""The returns saga's definition, run through the coordinator's engine on every path.

The engine is the same one that runs the order saga; these tests prove the definition means
what the README says of the returns flow.
"""

from __future__ import annotations

from contracts.catalog import EmailFailed, EmailSent
from contracts.parts import ReservedItem
from contracts.return_samples import T0, sample_return_requested
from contracts.returns import (
    InventoryRestocked,
    InventoryRestockRefused,
    InventoryUnstocked,
    PaymentReturnRefundDeclined,
    PaymentReturnRefunded,
    PickupCancelled,
    PickupFailed,
    PickupScheduled,
    ReturnApproved,
    ReturnCancelled,
    ReturnCompleted,
    ReturnRejected,
    ReturnRequested,
)
from sagas.returns import V1
from sagas.shipped import SAGAS
from tests.unit.saga_coordinator.engine.trip import Trip


def requested(unit_price: int = 1_250) -> ReturnRequested:
    return sample_return_requested("ord-1", items=(("SKU-RED-MUG", 1, unit_price),))


def scheduled() -> PickupScheduled:
    return PickupScheduled(pickup_id="pck-1", carrier="DHL", country_code="DE", scheduled_at=T0)


def restocked() -> InventoryRestocked:
    items = (ReservedItem(sku="SKU-RED-MUG", quantity=1),)
    return InventoryRestocked(restock_id="rst-1", items=items, restocked_at=T0)


def refunded() -> PaymentReturnRefunded:
    return PaymentReturnRefunded(
        refund_id="rfd-1", payment_id="pay-1", amount_minor=1_250, currency="EUR", refunded_at=T0
    )


def confirmation() -> EmailSent:
    return EmailSent(template="return_confirmation", message_id="m-1", sent_at=T0)


def started(unit_price: int = 1_250) -> Trip:
    trip = Trip(V1, key="ret-1")
    trip.send(requested(unit_price))
    return trip


def test_the_returns_saga_is_shipped():
    assert SAGAS.current("return") is V1


def test_a_small_return_is_approved_by_policy_and_completes():
    trip = started()
    assert trip.emitted_types() == ["return.approved"]
    assert trip.state.status(V1) == "requested"
    trip.send(scheduled())
    assert trip.state.status(V1) == "collecting"
    trip.send(restocked())
    trip.send(refunded())
    assert trip.state.status(V1) == "refunded"
    assert trip.state.data["refunded"] == 1_250
    trip.send(confirmation())
    assert trip.state.status(V1) == "completed"
    done = trip.emitted[-1]
    assert isinstance(done, ReturnCompleted)
    assert done.notes == ()
    assert trip.timers == {}


def test_a_large_refund_waits_for_a_person_and_can_be_rejected():
    trip = started(unit_price=250_000)
    assert trip.emitted_types() == ["return.approval_requested"]
    assert trip.state.status(V1) == "awaiting_approval"
    trip.send(ReturnRejected(rejected_by="ops-ann", reason="worn", rejected_at=T0))
    cancelled = trip.emitted[-1]
    assert isinstance(cancelled, ReturnCancelled)
    assert cancelled.reason == "approval_rejected"
    assert trip.emitted_types() == ["return.approval_requested", "return.cancelled"]


def test_an_unanswered_approval_rejects_the_return_when_it_expires():
    trip = started(unit_price=250_000)
    trip.wait(2 * 24 * 3600 + 1)
    assert trip.emitted_types()[-2:] == ["return.rejected", "return.cancelled"]
    assert trip.emitted[-1].reason == "approval_timeout"  # type: ignore[attr-defined]


def test_an_approved_large_return_goes_on_to_the_pickup():
    trip = started(unit_price=250_000)
    trip.send(ReturnApproved(approved_by="ops-ann", approved_at=T0), producer="api")
    assert set(trip.timers) == {"deadline:pickup"}


def test_a_failed_pickup_cancels_with_nothing_to_undo():
    trip = started()
    trip.send(PickupFailed(reason="country not served", country_code="AQ", failed_at=T0))
    assert trip.emitted_types() == ["return.approved", "return.cancelled"]
    assert trip.emitted[-1].reason == "pickup_failed"  # type: ignore[attr-defined]


def test_a_refused_inspection_cancels_the_pickup_before_the_saga_ends():
    trip = started()
    trip.send(scheduled())
    trip.send(InventoryRestockRefused(reason="damaged", skus=("SKU-RED-MUG",), refused_at=T0))
    assert trip.emitted_types() == ["return.approved", "pickup.cancel"]
    trip.send(PickupCancelled(pickup_id="pck-1", cancelled_at=T0))
    assert trip.emitted_types()[-1] == "return.cancelled"
    cancelled = trip.emitted[-1]
    assert isinstance(cancelled, ReturnCancelled)
    assert cancelled.reason == "inspection_failed"
    assert cancelled.detail is not None
    assert "damaged: SKU-RED-MUG" in cancelled.detail


def test_a_declined_refund_undoes_the_restock_then_the_pickup_newest_first():
    trip = started()
    trip.send(scheduled())
    trip.send(restocked())
    trip.send(PaymentReturnRefundDeclined(reason="no_charge", refundable_minor=0, declined_at=T0))
    assert trip.emitted_types()[-1] == "inventory.unstock"
    trip.send(InventoryUnstocked(restock_id="rst-1", unstocked_at=T0))
    assert trip.emitted_types()[-1] == "pickup.cancel"
    trip.send(PickupCancelled(pickup_id="pck-1", cancelled_at=T0))
    assert trip.emitted[-1].reason == "refund_declined"  # type: ignore[attr-defined]
    assert trip.timers == {}


def test_a_failed_confirmation_email_completes_the_return_with_a_note():
    trip = started()
    for event in (scheduled(), restocked(), refunded()):
        trip.send(event)
    trip.send(
        EmailFailed(template="return_confirmation", reason="bounced", permanent=True, failed_at=T0)
    )
    done = trip.emitted[-1]
    assert isinstance(done, ReturnCompleted)
    assert done.notes == ("return confirmation email failed: bounced",)


def test_an_order_confirmation_does_not_answer_the_return_email_step():
    trip = started()
    for event in (scheduled(), restocked(), refunded()):
        trip.send(event)
    trip.send(EmailSent(template="order_confirmation", message_id="m-9", sent_at=T0))
    assert trip.state.status(V1) == "refunded"
