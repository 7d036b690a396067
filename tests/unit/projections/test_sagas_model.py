"""The generic saga fold on definitions written only for these tests.

The "trip" saga of the engine's tests (hold → check, a person when the total reaches the
threshold → pay, with a started signal → ship, critical, and mail, optional, in parallel) and a
"fan" saga below (two steps that start with the saga, joined by a third), each run through the
coordinator's engine (:class:`~tests.unit.projections.saga_log.LoggedRun`) and folded from the
log it leaves.
"""

from __future__ import annotations

from contracts.catalog import (
    CATALOG,
    CrmCustomerUpdated,
    EmailFailed,
    EmailSent,
    InventoryRelease,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderApproved,
    OrderCancelled,
    OrderCompleted,
    OrderNeedsAttention,
    OrderRejected,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefund,
    PaymentRefunded,
    ShipmentFailed,
    ShipmentScheduled,
)
from projections.sagas_model import (
    CANCELLED,
    COMPENSATING,
    COMPLETED,
    NEEDS_ATTENTION,
    RUNNING,
    SagaView,
    fold_saga,
)
from sagas.definition import Compensation, Fails, SagaDefinition, Step, on
from sagas.emit import Endings
from tests.unit.saga_coordinator.engine.trip import (
    T0,
    TRIP,
    charged,
    picked_up,
    placed,
    reserved,
    scheduled,
)

from .saga_log import LoggedRun

BIG = 250_000


def states(view: SagaView) -> dict[str, str]:
    return {s.step: s.state for s in view.steps}


def step(view: SagaView, name: str) -> dict[str, object]:
    return next(s.to_json() for s in view.steps if s.step == name)


def fold(run: LoggedRun) -> SagaView:
    return fold_saga(run.trip.definition, run.key, run.log)


def small_paid() -> LoggedRun:
    return LoggedRun(TRIP).send(placed()).send(reserved()).auto().send(charged())


def test_a_new_saga_runs_its_first_step() -> None:
    view = fold(LoggedRun(TRIP).send(placed()))
    assert (view.status, view.milestone, view.current_steps) == (RUNNING, "booked", ["hold"])
    assert (view.steps_done, view.steps_expected) == (0, 4)
    assert step(view, "hold")["triggered_by"] == "order.placed"
    assert view.started_at is not None
    assert view.ended_at is None


def test_a_saga_keeps_what_its_start_captured_and_its_start_events_trace() -> None:
    run = LoggedRun(TRIP).send(placed(total=4_200)).send(reserved())
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    run.log[0] = run.log[0]._replace(traceparent=traceparent)
    view = fold(run)
    # TRIP's start captures the total as `total` and the currency; nothing else of the event.
    assert view.attributes == {"total": 4_200, "currency": "EUR"}
    assert view.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert view.to_json()["attributes"] == view.attributes
    assert fold(LoggedRun(TRIP).send(reserved())).attributes == {}  # no start event: nothing


def test_parallel_steps_run_together_and_the_saga_completes_when_both_are_settled() -> None:
    run = small_paid()
    view = fold(run)
    assert view.current_steps == ["ship", "mail"]
    assert view.milestone == "paid"
    run.send(scheduled())
    assert fold(run).current_steps == ["mail"]
    run.send(EmailSent.model_validate({"template": "order_confirmation", "message_id": "m",
                                       "sent_at": T0}))  # fmt: skip
    view = fold(run)
    assert (view.status, view.current_steps, view.reason) == (COMPLETED, [], None)
    assert (view.steps_done, view.steps_expected) == (4, 4)
    assert view.ended_at == max(e.occurred_at for e in run.log)


def test_an_optional_step_failing_only_leaves_it_failed() -> None:
    run = small_paid().send(scheduled())
    run.send(EmailFailed(template="order_confirmation", reason="mailbox full", permanent=True,
                         failed_at=T0))  # fmt: skip
    view = fold(run)
    assert view.status == COMPLETED
    assert states(view)["mail"] == "failed"
    assert step(view, "mail")["detail"] == "mailbox full"
    assert (view.steps_done, view.steps_expected) == (4, 4)


def test_an_optional_step_without_an_answer_timed_out_when_the_saga_completes() -> None:
    view = fold(small_paid().send(scheduled()).wait(5))
    assert view.status == COMPLETED
    assert states(view)["mail"] == "timed_out"
    assert (view.steps_done, view.steps_expected) == (3, 4)


def test_the_condition_branch_asks_a_person_only_above_the_threshold() -> None:
    small = fold(LoggedRun(TRIP).send(placed()).send(reserved()))
    assert small.status == RUNNING
    assert states(small)["check"] == "skipped"
    assert step(small, "check")["on_path"] is False
    big_run = LoggedRun(TRIP).send(placed(BIG)).send(reserved())
    big = fold(big_run)
    assert (big.status, big.current_steps) == ("checking", ["check"])
    assert (big.steps_done, big.steps_expected) == (1, 5)
    big_run.send(OrderApproved(approved_by="ann", approved_at=T0), "person")
    approved = fold(big_run)
    assert states(approved)["check"] == "succeeded"
    assert (approved.status, approved.current_steps) == (RUNNING, ["pay"])


def test_a_rejection_compensates_then_cancels_with_the_tasks_reason() -> None:
    run = LoggedRun(TRIP).send(placed(BIG)).send(reserved())
    run.send(OrderRejected(rejected_by="ann", reason="no", rejected_at=T0), "person")
    view = fold(run)
    assert (view.status, view.current_steps) == (COMPENSATING, ["compensation"])
    assert [(c.step, c.command, c.acknowledged_at) for c in view.compensations] == [
        ("hold", "inventory.release", None)
    ]
    run.send(InventoryReleased(reservation_id="res-1", released_at=T0))
    view = fold(run)
    assert (view.status, view.reason) == (CANCELLED, "rejected")
    assert step(view, "check")["detail"] == "no by ann"
    assert view.compensations[0].acknowledged_at is not None


def test_a_task_rejected_by_its_timeout_timed_out() -> None:
    run = LoggedRun(TRIP).send(placed(BIG)).send(reserved()).wait(60)
    view = fold(run.send(InventoryReleased(reservation_id="res-1", released_at=T0)))
    assert (view.status, view.reason) == (CANCELLED, "timed_out")
    assert states(view)["check"] == "timed_out"


def test_a_started_signal_is_the_steps_start() -> None:
    run = LoggedRun(TRIP).send(placed()).send(reserved()).auto().send(picked_up())
    pay = step(fold(run), "pay")
    assert (pay["triggered_by"], pay["started_by"]) == ("order.approved", "crm.customer_updated")
    assert pay["started_at"] != pay["triggered_at"]


def test_a_critical_deadline_cancels_with_its_reason_and_the_step_timed_out() -> None:
    run = LoggedRun(TRIP).send(placed()).send(reserved()).auto().wait(3)
    view = fold(run.send(InventoryReleased(reservation_id="res-1", released_at=T0)))
    assert (view.status, view.reason) == (CANCELLED, "pay_timeout")
    assert states(view)["pay"] == "timed_out"
    assert states(view)["mail"] == "pending"
    assert step(view, "mail")["on_path"] is False


def test_compensation_newest_first_and_needs_attention_when_never_acknowledged() -> None:
    run = small_paid().send(ShipmentFailed(reason="nope", country_code="AQ", failed_at=T0))
    view = fold(run)
    assert view.status == COMPENSATING
    assert view.reason is None
    assert [c.step for c in view.compensations] == ["pay"]
    run.send(PaymentRefunded(payment_id="pay-1", amount_minor=2_599, currency="EUR",
                             refunded_at=T0))  # fmt: skip
    view = fold(run)
    assert [(c.step, c.acknowledged_at is not None) for c in view.compensations] == [
        ("pay", True), ("hold", False)
    ]  # fmt: skip
    run.wait(2).wait(2)
    view = fold(run)
    assert view.status == NEEDS_ATTENTION
    assert view.compensations[1].attempts == 2
    run.send(InventoryReleased(reservation_id="res-1", released_at=T0))
    view = fold(run)
    assert (view.status, view.reason) == (CANCELLED, "ship_failed")
    assert view.ended_at is not None


def test_a_failing_first_step_cancels_without_compensation() -> None:
    failed = InventoryReservationFailed.model_validate({"reason": "gone", "unavailable": []})
    view = fold(LoggedRun(TRIP).send(placed()).send(failed))
    assert (view.status, view.reason, view.compensations) == (CANCELLED, "no_stock", [])
    hold = step(view, "hold")
    assert (hold["state"], hold["reason"], hold["detail"]) == ("failed", "no_stock", "gone")
    # hold, pay and ship (critical); not check (never asked) nor mail (optional, never sent)
    assert (view.steps_done, view.steps_expected) == (1, 3)


def test_events_of_another_saga_type_or_before_the_start_change_nothing_unnamed() -> None:
    run = LoggedRun(TRIP).send(reserved()).send(placed())
    view = fold(run)
    assert states(view)["hold"] == "succeeded"
    assert view.current_steps == ["pay"]


FAN = SagaDefinition(
    saga_type="fan",
    version=1,
    key="fan_id",
    start=on(CATALOG["order.placed"]),
    nodes=[
        Step(
            "stock",
            succeeded_on=[on(InventoryReserved)],
            fails=[Fails(on(InventoryReservationFailed), "no_stock")],
            compensation=Compensation(
                InventoryRelease,
                lambda e: InventoryRelease(reason=e.reason, requested_at=e.at),
                InventoryReleased,
            ),
        ),
        Step(
            "money",
            succeeded_on=[on(PaymentCharged)],
            fails=[Fails(on(PaymentDeclined), "declined")],
            compensation=Compensation(
                PaymentRefund,
                lambda e: PaymentRefund(
                    amount_minor=1, currency="EUR", reason=e.reason, requested_at=e.at
                ),
                PaymentRefunded,
            ),
            milestone="funded",
        ),
        Step(
            "deliver",
            triggered_by=on(CrmCustomerUpdated),
            after=["stock", "money"],
            succeeded_on=[on(ShipmentScheduled)],
            fails=[Fails(on(ShipmentFailed), "lost")],
        ),
    ],
    endings=Endings(
        completed=lambda e: OrderCompleted(completed_at=e.at, notes=e.notes),
        cancelled=lambda e: OrderCancelled(reason="out_of_stock", cancelled_at=e.at),
        needs_attention=lambda e: OrderNeedsAttention(
            step=e.step, reason=e.reason, detected_at=e.at
        ),
    ),
    reasons=["no_stock", "declined", "lost"],
    catalog=CATALOG,
)


def test_a_join_waits_for_both_branches() -> None:
    run = LoggedRun(FAN, "fan-1").send(placed())
    assert fold(run).current_steps == ["stock", "money"]
    run.send(reserved())
    view = fold(run)
    assert (view.current_steps, view.milestone) == (["money"], "started")
    run.send(charged())
    assert fold(run).milestone == "funded"
    run.send(picked_up())
    assert fold(run).current_steps == ["deliver"]
    run.send(scheduled())
    view = fold(run)
    assert (view.status, view.steps_done, view.steps_expected) == (COMPLETED, 3, 3)


def test_a_failed_branch_compensates_the_other_and_cancels_with_its_own_reason() -> None:
    run = LoggedRun(FAN, "fan-1").send(placed()).send(reserved())
    run.send(PaymentDeclined(reason="card_expired", declined_at=T0))
    assert fold(run).status == COMPENSATING
    view = fold(run.send(InventoryReleased(reservation_id="res-1", released_at=T0)))
    # The cancellation names a reason outside the definition's: the failure's reason counts.
    assert (view.status, view.reason) == (CANCELLED, "declined")
    assert [c.command for c in view.compensations] == ["inventory.release"]
    assert states(view)["deliver"] == "pending"


def test_no_events_no_progress() -> None:
    view = fold_saga(FAN, "fan-0", [])
    assert (view.status, view.event_count, view.steps) == (RUNNING, 0, [])
    assert view.to_json()["progress"] == {"done": 0, "expected": 0}


def test_a_step_failing_after_it_succeeded_stays_succeeded() -> None:
    run = LoggedRun(FAN, "fan-1").send(placed()).send(reserved())
    run.send(InventoryReservationFailed.model_validate({"reason": "late", "unavailable": []}))
    assert states(fold(run))["stock"] == "succeeded"
    assert fold(run).updated_at == run.log[-1].occurred_at
