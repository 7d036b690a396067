"""The chaos run's invariants over crafted table states: each one catches its violation."""

from __future__ import annotations

from choreo.chaos.faults import Injected
from choreo.chaos.invariants import (
    CHECKS,
    cancelled_by_deadline,
    charges_and_refunds,
    check_all,
    malformed_dead_lettered,
    no_live_shipment_on_cancelled,
    no_reservation_held,
    no_wrong_deadline,
    one_confirmation,
    one_return_confirmation,
    projections_rebuilt,
    return_pickups,
    return_refunds,
    return_restocks,
    sagas_terminal,
    stock_conserved,
)
from choreo.chaos.snapshot import (
    OrderView,
    Payment,
    Restock,
    ReturnView,
    Shipment,
    Snapshot,
    Stock,
)


def healthy() -> Snapshot:
    """A run of four orders where everything held (happy, declined, unshippable, timeout)
    and three returns: a mug back refunded, a damaged one refused at inspection, a mug of the
    declined order restocked, not refunded, then taken out again."""
    return Snapshot(
        orders=[
            OrderView("ord-happy", "happy", "completed"),
            OrderView("ord-declined", "declined", "cancelled", "payment_declined"),
            OrderView("ord-aq", "unshippable", "cancelled", "shipment_failed"),
            OrderView("ord-timeout", "timeout", "cancelled", "payment_timeout", ("payment",)),
        ],
        tokens={
            "ord-happy": "tok_visa",
            "ord-declined": "tok_declined",
            "ord-aq": "tok_visa",
            "ord-timeout": "tok_timeout",
        },
        payments={
            "ord-happy": Payment("charged", 0),
            "ord-declined": Payment("declined", 0),
            "ord-aq": Payment("charged", 1),
        },
        reservations={
            "ord-happy": "shipped",
            "ord-declined": "released",
            "ord-aq": "released",
            "ord-timeout": "released",
        },
        stock={"SKU-RED-MUG": Stock(1001, 999, 0, 2)},  # one restocked by the happy return
        shipments={"ord-happy": Shipment("scheduled", False), "ord-aq": Shipment("failed", False)},
        confirmations={"ord-happy": 1},
        recipients={"ord-happy": "ada@example.com"},
        injected=[Injected("choreo.order", 0, 7)],
        dead_letters={("choreo.order", 0, 7): ["not single-object Avro"]},
        rebuild_differences=[],
        returns=[
            ReturnView("ret-happy", "happy", "completed"),
            ReturnView("ret-damaged", "damaged", "cancelled", "inspection_failed"),
            ReturnView("ret-unpaid", "unpaid", "cancelled", "refund_declined"),
        ],
        refunds={"ret-happy": "refunded", "ret-unpaid": "declined"},
        restocks={
            "ret-happy": Restock("restocked", False),
            "ret-damaged": Restock("refused", False),
            "ret-unpaid": Restock("restocked", True),
        },
        pickups={
            "ret-happy": Shipment("scheduled", False),
            "ret-damaged": Shipment("scheduled", True),
            "ret-unpaid": Shipment("scheduled", True),
        },
        return_confirmations={"ret-happy": 1},
    )


def test_a_healthy_run_holds_every_invariant():
    checks = check_all(healthy())
    assert len(checks) == len(CHECKS) > 0
    assert [c.name for c in checks if not c.held] == []
    assert all(c.checked > 0 for c in checks)
    assert cancelled_by_deadline(healthy()) == 1  # the tok_timeout order, rightly


def test_a_saga_left_running_is_a_violation():
    snap = healthy()
    snap.orders.append(OrderView("ord-stuck", "happy", "payment_pending"))
    snap.returns.append(ReturnView("ret-stuck", "happy", "needs_attention"))
    check = sagas_terminal(snap)
    assert check.checked == 9
    assert (check.violations, check.examples) == (
        2,
        ["ord-stuck is payment_pending", "return ret-stuck is needs_attention"],
    )


def test_a_completed_return_not_refunded_or_a_cancelled_one_refunded_is_a_violation():
    snap = healthy()
    assert return_refunds(snap).checked == 3
    snap.refunds["ret-unpaid"] = "refunded"
    del snap.refunds["ret-happy"]
    check = return_refunds(snap)
    assert check.examples == [
        "return ret-happy completed, refund None",
        "return ret-unpaid cancelled, refund refunded",
    ]


def test_a_completed_return_not_restocked_or_a_cancelled_ones_units_kept_is_a_violation():
    snap = healthy()
    snap.restocks["ret-unpaid"] = Restock("restocked", False)  # the unstock never happened
    snap.restocks["ret-happy"] = Restock("restocked", True)  # taken out of a completed return
    check = return_restocks(snap)
    assert check.violations == 2
    assert check.examples[0].startswith("return ret-happy completed, restock Restock(")


def test_a_live_pickup_of_a_cancelled_return_or_none_for_a_completed_one_is_a_violation():
    snap = healthy()
    snap.pickups["ret-damaged"] = Shipment("scheduled", False)
    del snap.pickups["ret-happy"]
    check = return_pickups(snap)
    assert check.violations == 2
    assert check.examples == [
        "return ret-happy completed, pickup None",
        "return ret-damaged cancelled, pickup Shipment(outcome='scheduled', cancelled=False)",
    ]


def test_a_completed_return_without_exactly_one_confirmation_is_a_violation():
    snap = healthy()
    assert one_return_confirmation(snap).held
    snap.return_confirmations["ret-happy"] = 0
    assert one_return_confirmation(snap).examples == ["return ret-happy: 0 confirmation(s)"]


def test_a_cancelled_charge_refunded_twice_or_never_is_a_violation():
    snap = healthy()
    snap.payments["ord-aq"] = Payment("charged", 0)
    assert charges_and_refunds(snap).violations == 1
    snap.payments["ord-aq"] = Payment("charged", 1)
    snap.payments["ord-happy"] = Payment("charged", 1)  # a completed order refunded
    assert charges_and_refunds(snap).violations == 1


def test_a_held_reservation_or_reserved_stock_is_a_violation():
    snap = healthy()
    snap.reservations["ord-declined"] = "reserved"
    snap.stock["SKU-TEA-BOX"] = Stock(1000, 999, 1, 0)
    check = no_reservation_held(snap)
    assert check.violations == 2
    assert check.examples == [
        "ord-declined: reservation still held",
        "SKU-TEA-BOX: 1 unit(s) reserved, 0 by other orders",
    ]


def test_stock_reserved_by_orders_outside_the_run_is_no_violation():
    # An order placed before the run, waiting for a person, holds two watches.
    snap = healthy()
    snap.stock["SKU-GOLD-WATCH"] = Stock(50, 48, 2, 0)
    snap.held_elsewhere["SKU-GOLD-WATCH"] = 2
    assert no_reservation_held(snap).held
    snap.stock["SKU-GOLD-WATCH"] = Stock(50, 47, 3, 0)  # one more than they hold
    assert no_reservation_held(snap).examples == [
        "SKU-GOLD-WATCH: 3 unit(s) reserved, 2 by other orders"
    ]


def test_a_live_shipment_on_a_cancelled_order_is_a_violation():
    snap = healthy()
    snap.shipments["ord-aq"] = Shipment("scheduled", False)
    assert no_live_shipment_on_cancelled(snap).violations == 1
    snap.shipments["ord-aq"] = Shipment("scheduled", True)
    assert no_live_shipment_on_cancelled(snap).held


def test_a_completed_order_without_its_confirmation_is_a_violation_unless_it_bounces():
    snap = healthy()
    snap.confirmations.clear()
    assert one_confirmation(snap).violations == 1
    snap.recipients["ord-happy"] = "nobody@bounce.example"
    assert one_confirmation(snap).held


def test_stock_that_does_not_add_up_is_a_violation():
    snap = healthy()
    snap.stock["SKU-RED-MUG"] = Stock(1000, 997, 0, 2)
    assert stock_conserved(snap).examples == ["SKU-RED-MUG: 997+0+2 != 1000"]


def test_a_malformed_value_missing_from_the_dlq_or_without_reason_is_a_violation():
    snap = healthy()
    snap.injected.append(Injected("choreo.payment", 2, 40))
    assert malformed_dead_lettered(snap).violations == 1
    snap.dead_letters[("choreo.payment", 2, 40)] = [" "]
    assert malformed_dead_lettered(snap).violations == 1


def test_read_models_that_differ_from_a_rebuild_are_a_violation():
    snap = healthy()
    snap.rebuild_differences = ["saga_status order/ord-happy: only in live"]
    assert projections_rebuilt(snap).violations == 1
    snap.rebuild_differences = None  # not verified: nothing checked, nothing violated
    assert (projections_rebuilt(snap).checked, projections_rebuilt(snap).held) == (0, True)


def test_an_order_cancelled_by_a_deadline_whose_participant_would_answer_is_a_violation():
    snap = healthy()
    # A healthy card whose payment answer came after the deadline (Choreo's own lag).
    snap.orders.append(OrderView("ord-late", "happy", "cancelled", "payment_timeout", ("payment",)))
    snap.tokens["ord-late"] = "tok_visa"
    # A declined card cancelled by deadline instead of payment_declined.
    snap.orders.append(
        OrderView("ord-dl", "declined", "cancelled", "payment_timeout", ("payment",))
    )
    snap.tokens["ord-dl"] = "tok_declined"
    # Shipping never answered in time: its deadline cancels as shipment_failed.
    snap.orders.append(
        OrderView("ord-ship", "happy", "cancelled", "shipment_failed", ("shipping",))
    )
    snap.tokens["ord-ship"] = "tok_visa"
    # The run answers every approval: an approval timeout is the platform's doing too.
    snap.orders.append(
        OrderView("ord-big", "large", "cancelled", "approval_timeout", ("approval",))
    )
    # Every participant of a return answers: any deadline that cancels one is wrong.
    snap.returns.append(ReturnView("ret-late", "happy", "cancelled", "refund_timeout", ("refund",)))
    check = no_wrong_deadline(snap)
    assert check.checked == 6
    assert check.violations == 5
    assert check.examples[0] == "ord-late (happy, token tok_visa): payment timed out"
    assert check.examples[-1] == "return ret-late (happy): refund timed out"
    assert cancelled_by_deadline(snap) == 6


def test_a_completed_order_whose_email_timed_out_is_not_a_deadline_cancellation():
    snap = healthy()
    snap.orders[0] = OrderView("ord-happy", "happy", "completed", None, ("email",))
    assert no_wrong_deadline(snap).held
    assert cancelled_by_deadline(snap) == 1
