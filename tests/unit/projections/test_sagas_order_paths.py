"""The orders API's view of the order saga (:func:`projections.queries.order_json` of the
generic fold) on every path of the engine's equivalence test.

Each README path and its out-of-order and late variants runs through the coordinator's
engine; the order's state folded from the log it leaves must end as the orders API has always
told it (status, cancel reason, compensations acknowledged). When the order read model of its
own was retired, the generic fold agreed with it after every input of every path (status,
cancel reason, current step, steps done, compensations acknowledged); the ends below are that
model's.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from projections.queries import order_json
from projections.sagas_model import CANCELLED, fold_saga
from projections.sagas_store import SAGA_STATUS_COLUMNS, row_json, row_tuple
from sagas.order import V1 as ORDER
from tests.unit.saga_coordinator.engine.test_order_equivalence import PATHS

from .saga_log import LoggedRun

RELEASED, REFUNDED, UNSHIPPED = "inventory.release", "payment.refund", "shipment.cancel"
ENDS: dict[str, tuple[str, str | None, list[str]]] = {
    "happy": ("completed", None, []),
    "happy, answers out of order": ("completed", None, []),
    "large, approved by a person": ("completed", None, []),
    "large, rejected": ("cancelled", "approval_rejected", [RELEASED]),
    "large, approval timed out": ("cancelled", "approval_timeout", [RELEASED]),
    "out of stock": ("cancelled", "out_of_stock", []),
    "inventory deadline, then a late reservation": ("cancelled", "out_of_stock", [RELEASED]),
    "payment declined": ("cancelled", "payment_declined", [RELEASED]),
    "payment deadline, then a late charge": ("cancelled", "payment_timeout", [RELEASED, REFUNDED]),
    "shipment failed": ("cancelled", "shipment_failed", [RELEASED, REFUNDED]),
    "shipping deadline": ("cancelled", "shipment_failed", [RELEASED, REFUNDED]),
    "crm deadline": ("cancelled", "shipment_failed", [RELEASED, REFUNDED, UNSHIPPED]),
    "email failed": ("completed", None, []),
    "email deadline": ("completed", None, []),
    "another email template is not the confirmation": ("completed", None, []),
    "compensation never acknowledged, then late": ("cancelled", "payment_declined", [RELEASED]),
    "acknowledgement of nothing sent": ("reserved", None, []),
    "the reservation before the order": ("completed", None, []),
    "an acknowledgement before the order": ("reserved", None, []),
    "a large order's reservation first": ("reserved", None, []),
}


def _run(path: str) -> LoggedRun:
    run = LoggedRun(ORDER, "ord-1")
    actions: list[tuple[Any, ...]] = PATHS[path]
    for action in actions:
        if action[0] == "send":
            run.send(action[1](), action[2])
        else:
            run.wait(action[1])
    return run


def test_every_path_has_its_end() -> None:
    assert set(ENDS) == set(PATHS)


@pytest.mark.parametrize("path", list(PATHS))
def test_every_order_path_ends_as_the_orders_api_tells_it(path: str) -> None:
    order = order_json(fold_saga(ORDER, "ord-1", _run(path).log).to_json())
    assert (order["status"], order["cancel_reason"], order["compensations_done"]) == ENDS[path]
    if order["status"] in ("completed", "cancelled"):
        assert order["current_step"] is None
    assert order["customer_id"] is not None
    assert isinstance(order["total_minor"], int)


def test_a_running_order_shows_its_milestone_and_current_step() -> None:
    run = _run("happy")
    run.log = run.log[:4]  # placed, reserved, auto-approved, charged
    order = order_json(fold_saga(ORDER, "ord-1", run.log).to_json())
    assert (order["status"], order["current_step"]) == ("paid", "shipping")
    assert order["progress"] == {"done": 2, "expected": 5}  # approval skipped: off the path
    assert order["placed_at"] == run.log[0].occurred_at.isoformat()
    assert [s["step"] for s in order["timeline"]] == [n.name for n in ORDER.nodes]


def test_the_fold_depends_on_the_set_of_events_not_their_order() -> None:
    run = _run("shipment failed")
    forward = fold_saga(ORDER, "ord-1", run.log)
    assert fold_saga(ORDER, "ord-1", list(reversed(run.log))) == forward
    assert forward.status == CANCELLED
    assert forward.reason == "shipment_failed"
    assert [(c.step, c.attempts, c.acknowledged_at is not None) for c in forward.compensations] == [
        ("payment", 1, True),
        ("inventory", 1, True),
    ]


@pytest.mark.parametrize("path", list(PATHS))
def test_stored_json_columns_are_the_views_json(path: str) -> None:
    # The rows' JSON columns are orjson's dump of the view dataclasses: their field names and
    # datetimes must read back exactly as the views' to_json shows them, and the orders API
    # reads a stored row as it reads the view.
    saga = fold_saga(ORDER, "ord-1", _run(path).log)
    row = dict(zip(SAGA_STATUS_COLUMNS, row_tuple(saga), strict=True))
    assert orjson.loads(row["timeline"]) == [s.to_json() for s in saga.steps]
    assert orjson.loads(row["compensations"]) == [c.to_json() for c in saga.compensations]
    assert order_json(row_json(row)) == order_json(saga.to_json())
