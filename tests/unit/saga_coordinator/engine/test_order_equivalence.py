"""The generic engine running the order saga's definition (sagas/order.py) decides exactly as
the order saga's own core (saga_coordinator/saga.py) does: the same events and commands, the
same timers, status, cancel reason and detail, current step and notes, after every input, on
every path of the README. This is what lets the coordinator move onto the engine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from saga_coordinator.engine.state import fold
from saga_coordinator.engine.timing import desired_timers
from saga_coordinator.legacy import upcast
from sagas.order import V1 as ORDER
from tests.unit.saga_coordinator.old_core.definition import V1 as LEGACY_V1

from ..flow import (
    LARGE,
    Driver,
    approved,
    charged,
    crm_updated,
    declined,
    email_failed,
    email_sent,
    out_of_stock,
    placed,
    refunded,
    rejected,
    released,
    reserved,
    scheduled,
    shipment_cancelled,
    shipment_failed,
)
from .trip import Trip

COORDINATOR = "saga-coordinator"
Action = tuple[Any, ...]


def send(factory: Callable[[], Any], producer: str = "test") -> Action:
    return ("send", factory, producer)


def echo_approval() -> Action:
    """The coordinator's own auto-approval, consumed back from the order topic."""
    return ("send", lambda: approved(by="policy:auto"), COORDINATOR)


def wait(seconds: float) -> Action:
    return ("wait", seconds)


SMALL_HAPPY = [send(placed), send(reserved), echo_approval(), send(charged), send(scheduled)]
PATHS: dict[str, list[Action]] = {
    "happy": [*SMALL_HAPPY, send(crm_updated), send(email_sent)],
    "happy, answers out of order": [
        send(placed),
        send(scheduled),
        send(reserved),
        send(email_sent),
        send(charged),
        send(crm_updated),
    ],
    "large, approved by a person": [
        send(lambda: placed(LARGE)),
        send(reserved),
        send(lambda: approved(by="ops-ann")),
        send(lambda: charged(LARGE)),
        send(scheduled),
        send(email_sent),
        send(crm_updated),
    ],
    "large, rejected": [
        send(lambda: placed(LARGE)),
        send(reserved),
        send(rejected),
        send(released),
    ],
    "large, approval timed out": [
        send(lambda: placed(LARGE)),
        send(reserved),
        wait(86_400),
        send(released),
        send(rejected),  # a person answering late changes nothing
    ],
    "out of stock": [send(placed), send(out_of_stock)],
    "inventory deadline, then a late reservation": [
        send(placed),
        wait(30),
        send(reserved),
        send(released),
    ],
    "payment declined": [
        send(placed),
        send(reserved),
        echo_approval(),
        send(declined),
        send(released),
    ],
    "payment deadline, then a late charge": [
        send(placed),
        send(reserved),
        echo_approval(),
        wait(30),
        send(released),
        send(charged),
        send(refunded),
    ],
    "shipment failed": [*SMALL_HAPPY[:4], send(shipment_failed), send(refunded), send(released)],
    "shipping deadline": [*SMALL_HAPPY[:4], wait(30), send(refunded), send(released)],
    "crm deadline": [
        *SMALL_HAPPY,
        send(email_sent),
        wait(30),
        send(shipment_cancelled),
        send(refunded),
        send(released),
    ],
    "email failed": [*SMALL_HAPPY, send(email_failed), send(crm_updated)],
    "email deadline": [*SMALL_HAPPY, send(crm_updated), wait(15)],
    "another email template is not the confirmation": [
        *SMALL_HAPPY,
        send(lambda: email_sent("approval_requested")),
        send(crm_updated),
        send(email_sent),
    ],
    "compensation never acknowledged, then late": [
        send(placed),
        send(reserved),
        echo_approval(),
        send(declined),
        wait(10),
        wait(10),
        wait(10),
        wait(10),
        wait(10),
        send(released),
    ],
    "acknowledgement of nothing sent": [send(placed), send(released), send(reserved)],
    "the reservation before the order": [
        send(reserved),
        send(placed),
        echo_approval(),
        send(charged),
        send(scheduled),
        send(crm_updated),
        send(email_sent),
    ],
    "an acknowledgement before the order": [send(released), send(placed), send(reserved)],
    "a large order's reservation first": [
        send(reserved),
        send(lambda: placed(LARGE)),
        send(lambda: approved(by="ops-ann")),
    ],
}


# The one deliberate difference: once a later step succeeded, the engine keeps no deadline of
# an earlier one (its answer is moot: a booked shipment means the charge happened). The old
# core did so for inventory and approval only, so an out-of-order (late) `payment.charged`
# could still cancel an order whose shipment was booked. See the test below.
SAME_TIMERS_EXCEPT_OUT_OF_ORDER = {"happy, answers out of order"}


def _compare(legacy: Driver, engine: Trip, step: str, *, timers: bool = True) -> None:
    ls, es = legacy.state, engine.state
    assert engine.emitted == legacy.emitted, step
    if timers:
        assert engine.timers == legacy.timers, step
    assert es.status(ORDER) == ls.status, step
    assert (es.cancel_reason, es.cancel_detail) == (ls.cancel_reason, ls.cancel_detail), step
    assert es.current(ORDER) == ls.current_step, step
    assert es.notes == ls.notes, step
    kept = ("reservation_id", "approved_by", "rejected_by", "payment_id", "shipment_id")
    assert {k: es.data.get(k) for k in kept} == {k: getattr(ls, k) for k in kept}, step
    assert [(u.step, u.acknowledged) for u in es.undos] == [
        (ORDER.compensated_by(c.command), c.acknowledged) for c in ls.compensations
    ], step


def _run(actions: list[Action], legacy: Driver, engine: Trip, *, timers: bool = True) -> None:
    engine.now = legacy.now
    for number, action in enumerate(actions, 1):
        if action[0] == "send":
            _, factory, producer = action
            event = factory()
            legacy.send(event, producer=producer)
            engine.send(event, producer=producer)
            step = f"#{number} {event.event_type} from {producer}"
        else:
            legacy.advance(timedelta(seconds=action[1]))
            engine.wait(action[1])
            step = f"#{number} after {action[1]}s"
        _compare(legacy, engine, step, timers=timers)


@pytest.mark.parametrize("path", list(PATHS))
def test_the_engine_decides_the_order_saga_as_its_own_core_does(path: str):
    engine = Trip(ORDER, key="ord-1", producer=COORDINATOR)
    _run(PATHS[path], Driver(), engine, timers=path not in SAME_TIMERS_EXCEPT_OUT_OF_ORDER)


def test_a_later_success_ends_an_earlier_steps_deadline():
    legacy, engine = Driver(), Trip(ORDER, key="ord-1", producer=COORDINATOR)
    _run(PATHS["happy, answers out of order"][:3], legacy, engine, timers=False)
    assert "deadline:payment" in legacy.timers  # the old core still waited for the charge
    assert set(engine.timers) == {"deadline:crm", "deadline:email"}


def test_with_escalation_the_engine_also_agrees():
    knobs = {"approval_timeout_action": "escalate"}
    legacy = Driver(LEGACY_V1.with_overrides(knobs))
    engine = Trip(ORDER.with_knobs(knobs), key="ord-1", producer=COORDINATOR)
    _run(
        [
            send(lambda: placed(LARGE)),
            send(reserved),
            wait(86_400),
            send(approved),
            send(lambda: charged(LARGE)),
        ],
        legacy,
        engine,
    )
    assert engine.state.status(engine.definition) == "paid"


@pytest.mark.parametrize("path", list(PATHS))
def test_a_saga_running_when_the_coordinator_moves_onto_the_engine_finishes_the_same(path: str):
    """At every point of every path: the old core's stored facts, read as generic facts
    (saga_coordinator.legacy), fold to the same saga, and the engine carries on from there
    exactly as the old core would have."""
    actions = PATHS[path]
    timers = path not in SAME_TIMERS_EXCEPT_OUT_OF_ORDER
    for cut in range(len(actions) + 1):
        legacy = Driver()
        engine = Trip(ORDER, key="ord-1", producer=COORDINATOR)
        _run(actions[:cut], legacy, Trip(ORDER, key="ord-1", producer=COORDINATOR), timers=timers)
        engine.facts = [upcast(fact, ORDER) for fact in legacy.facts]
        engine.state = fold("ord-1", engine.facts)
        engine.timers = desired_timers(engine.state, ORDER)
        engine.emitted = list(legacy.emitted)
        _compare(legacy, engine, f"upgraded after {cut} inputs", timers=timers)
        _run(actions[cut:], legacy, engine, timers=timers)
