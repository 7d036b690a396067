"""The saga definition API checks a definition when it is made: a rule per test, on small
definitions written only for these tests (a two-step "transfer" saga over catalog events)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.catalog import (
    CATALOG,
    InventoryRelease,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderApproved,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
    OrderRejected,
    PaymentCharged,
    PaymentDeclined,
)
from events.catalog import Catalog
from events.model import Event
from sagas.definition import (
    Compensation,
    Condition,
    Deadlines,
    Fails,
    HumanTask,
    InvalidDefinition,
    Knob,
    SagaDefinition,
    Step,
    on,
)
from sagas.emit import Emit, Endings
from sagas.order import V1 as ORDER
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS


def _never(e: Emit) -> Event:
    raise AssertionError("not rendered in these tests")


HOLD = Step(
    "hold",
    succeeded_on=[on(InventoryReserved)],
    fails=[Fails(on(InventoryReservationFailed), "no_stock")],
    deadlines=Deadlines(answer=Knob("hold_deadline", timedelta(seconds=5)), reason="no_stock"),
    compensation=Compensation(InventoryRelease, _never, InventoryReleased),
)
PAY = Step(
    "pay",
    triggered_by=on(InventoryReserved),
    after=["hold"],
    succeeded_on=[on(PaymentCharged)],
    fails=[Fails(on(PaymentDeclined), "declined")],
)
ENDINGS = Endings(completed=_never, cancelled=_never, needs_attention=_never)


def transfer(**changes: Any) -> SagaDefinition:
    fields: dict[str, Any] = {
        "saga_type": "transfer",
        "version": 1,
        "key": "transfer_id",
        "start": on(OrderPlaced),
        "nodes": [HOLD, PAY],
        "endings": ENDINGS,
        "reasons": ["no_stock", "declined", "rejected", "timed_out"],
        "catalog": CATALOG,
    }
    return SagaDefinition(**{**fields, **changes})


def test_a_valid_definition_is_accepted():
    d = transfer()
    assert [n.name for n in d.nodes] == ["hold", "pay"]
    assert d.knob_values() == {"hold_deadline": timedelta(seconds=5)}


def test_an_event_outside_the_catalog_is_refused():
    small = Catalog([OrderPlaced, InventoryReserved, PaymentCharged, PaymentDeclined])
    with pytest.raises(InvalidDefinition) as caught:
        transfer(catalog=small)
    message = str(caught.value)
    assert "saga definition transfer v1" in message
    assert "step 'hold': failure event 'inventory.reservation_failed' is not in the catalog" in (
        message
    )


def test_a_compensation_without_acknowledgement_is_refused():
    comp = dataclasses.replace(HOLD.compensation, acknowledged_by=None)  # type: ignore[type-var]
    hold = dataclasses.replace(HOLD, compensation=comp)
    problem = "step 'hold': compensation inventory.release has no acknowledgement"
    with pytest.raises(InvalidDefinition, match=re.escape(problem)):
        transfer(nodes=[hold, PAY])


def test_a_cycle_is_refused():
    hold = dataclasses.replace(HOLD, after=["pay"], triggered_by=on(PaymentCharged))
    with pytest.raises(
        InvalidDefinition, match=r"steps form a cycle: (hold -> pay -> hold|pay -> hold -> pay)"
    ):
        transfer(nodes=[hold, PAY])


def test_a_step_no_event_can_start_is_refused():
    pay = dataclasses.replace(PAY, triggered_by=None)
    with pytest.raises(InvalidDefinition, match="step 'pay': no event can start it"):
        transfer(nodes=[HOLD, pay])


def test_a_step_after_an_unknown_step_is_refused():
    pay = dataclasses.replace(PAY, after=["reserve"])
    with pytest.raises(InvalidDefinition, match="step 'pay': runs after unknown step 'reserve'"):
        transfer(nodes=[HOLD, pay])


def test_two_steps_of_one_name_are_refused():
    with pytest.raises(InvalidDefinition, match="step 'hold' is defined twice"):
        transfer(nodes=[HOLD, dataclasses.replace(PAY, name="hold")])


def test_a_failure_reason_the_saga_does_not_list_is_refused():
    with pytest.raises(InvalidDefinition, match="failure reason 'declined' is not among"):
        transfer(reasons=["no_stock"])


def test_a_step_without_success_event_is_refused():
    with pytest.raises(InvalidDefinition, match="step 'pay': no event means it succeeded"):
        transfer(nodes=[HOLD, dataclasses.replace(PAY, succeeded_on=[])])


def test_deadlines_must_be_positive_and_a_critical_deadline_needs_a_reason():
    zero = dataclasses.replace(HOLD, deadlines=Deadlines(answer=timedelta(0), reason="no_stock"))
    with pytest.raises(InvalidDefinition, match="its answer deadline must be positive"):
        transfer(nodes=[zero, PAY])
    silent = dataclasses.replace(HOLD, deadlines=Deadlines(answer=timedelta(seconds=1)))
    with pytest.raises(InvalidDefinition, match="needs the reason its expiry cancels with"):
        transfer(nodes=[silent, PAY])


def test_a_pick_up_deadline_needs_a_started_signal():
    limits = Deadlines(pick_up=timedelta(seconds=1), answer=timedelta(seconds=5), reason="declined")
    with pytest.raises(InvalidDefinition, match="pick-up deadline needs a started signal"):
        transfer(nodes=[HOLD, dataclasses.replace(PAY, deadlines=limits)])
    started = dataclasses.replace(PAY, deadlines=limits, started_on=on(OrderApproved))
    assert transfer(nodes=[HOLD, started]).node("pay") is started


def test_a_human_task_checks_its_timeout_and_reasons():
    task = HumanTask(
        "sign_off",
        after=["hold"],
        when=Condition("always", lambda data, knobs: True),
        request=_never,
        auto=_never,
        approve_on=on(OrderApproved),
        reject_on=Fails(on(OrderRejected), "rejected"),
        timeout=Knob("sign_off_timeout", timedelta(hours=1)),
        on_timeout=Knob("sign_off_timeout_action", "reject"),
        timeout_event=_never,
        timeout_reason="timed_out",
    )
    pay = dataclasses.replace(PAY, after=["sign_off"], triggered_by=on(OrderApproved))
    d = transfer(nodes=[HOLD, task, pay])
    assert d.tasks == (task,)
    with pytest.raises(InvalidDefinition, match="neither reject nor escalate"):
        d.with_knobs({"sign_off_timeout_action": "ignore"})
    with pytest.raises(InvalidDefinition, match="a rejection reason is not among"):
        transfer(nodes=[HOLD, dataclasses.replace(task, timeout_reason="lost"), pay])


def test_knobs_are_overridden_by_name_and_unknown_ones_refused():
    limit = HOLD.deadlines.answer
    assert limit is not None
    d = transfer().with_knobs({"hold_deadline": timedelta(seconds=9)})
    assert d.value(limit) == timedelta(seconds=9)
    assert transfer().value(limit) == timedelta(seconds=5)
    with pytest.raises(InvalidDefinition, match=r"no knobs \['hold_timeout'\]"):
        d.with_knobs({"hold_timeout": 1})


def test_two_definitions_of_one_version_are_refused_and_the_newest_starts_sagas():
    with pytest.raises(InvalidDefinition, match="saga definition transfer v1 is defined twice"):
        SagaRegistry([transfer(), transfer()])
    registry = SagaRegistry([transfer(), transfer(version=2), ORDER])
    assert registry.types == ["order", "transfer"]
    assert registry.current("transfer").version == 2
    assert registry.get("transfer", 1).version == 1
    with pytest.raises(KeyError, match="no saga definition transfer v3"):
        registry.get("transfer", 3)


def test_compensation_runs_newest_first_over_the_steps_that_succeeded():
    assert [s.name for s in ORDER.compensation_order(["inventory", "payment", "shipping"])] == [
        "shipping",
        "payment",
        "inventory",
    ]
    assert [s.name for s in ORDER.compensation_order(["inventory"])] == ["inventory"]


def test_the_order_saga_is_a_valid_definition_with_todays_knobs():
    assert ORDER.knob_values() == {
        "approval_threshold_minor": 100_000,
        "approval_timeout": timedelta(days=1),
        "approval_timeout_action": "reject",
        "compensation_ack_timeout": timedelta(seconds=10),
        "compensation_max_attempts": 5,
        "crm_deadline": timedelta(seconds=30),
        "email_deadline": timedelta(seconds=15),
        "inventory_deadline": timedelta(seconds=30),
        "payment_deadline": timedelta(seconds=30),
        "shipping_deadline": timedelta(seconds=30),
    }
    email = ORDER.node("email")
    assert isinstance(email, Step)
    assert not email.critical
    at = datetime(2026, 12, 2, tzinfo=UTC)
    knobs = ORDER.knob_values()
    done = ORDER.endings.completed(Emit({}, at, knobs, notes=("confirmation email failed: x",)))
    assert done == OrderCompleted(completed_at=at, notes=("confirmation email failed: x",))
    gone = ORDER.endings.cancelled(Emit({}, at, knobs, reason="out_of_stock", detail="none"))
    assert gone == OrderCancelled(reason="out_of_stock", detail="none", cancelled_at=at)


def test_a_participant_names_a_process():
    with pytest.raises(InvalidDefinition, match="participant 'pay ments' must name a process"):
        transfer(nodes=[HOLD, dataclasses.replace(PAY, participant="pay ments")])
    named = dataclasses.replace(PAY, participant="saga-payment")
    assert transfer(nodes=[HOLD, named]).node("pay") is named


@pytest.mark.parametrize("saga_type", SAGAS.types)
def test_every_shipped_human_task_builds_its_own_answers(saga_type: str):
    # What the API publishes for POST /sagas/{type}/{key}/approve|reject.
    tasks = SAGAS.current(saga_type).tasks
    assert tasks
    for task in tasks:
        assert task.answer is not None
        yes = task.answer(True, "ann", None)
        no = task.answer(False, "ann", "too much")
        assert task.approve_on.matches(yes)
        assert task.reject_on.on is not None
        assert task.reject_on.on.matches(no)
        assert getattr(no, "reason", None) == "too much"


def test_a_saga_type_is_found_by_its_keys_name_unless_two_share_it():
    # What a console page links a saga's data to (a return's order_id → the order's page).
    assert SAGAS.keyed_by == {"order_id": "order", "return_id": "return"}
    twin = dataclasses.replace(ORDER, saga_type="preorder")  # keyed by order_id too
    shared = SagaRegistry([*SAGAS, twin])
    assert shared.keyed_by == {"return_id": "return"}


def test_a_saga_is_named_by_the_types_whose_start_captures_its_key():
    # A return starts with its order's order_id: an order's page lists its returns.
    assert SAGAS.naming("order") == ["return"]
    assert SAGAS.naming("return") == []
    assert SAGAS.naming("preorder") == []  # a type no definition has (its rows outlived it)
    twin = dataclasses.replace(ORDER, saga_type="preorder")  # order_id: no longer one type's
    assert SagaRegistry([*SAGAS, twin]).naming("order") == []


def test_a_saga_names_the_types_whose_key_its_start_captures():
    # The reverse of naming: the definitions page says "a return names order by order_id".
    assert SAGAS.names("return") == {"order_id": "order"}
    assert SAGAS.names("order") == {}
    assert SAGAS.names("preorder") == {}
    twin = dataclasses.replace(ORDER, saga_type="preorder")  # order_id: no longer one type's
    assert SagaRegistry([*SAGAS, twin]).names("return") == {}
