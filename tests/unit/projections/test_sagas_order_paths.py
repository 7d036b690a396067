"""The generic saga model on the order saga agrees with the order read model on every path.

Every path of the engine's equivalence test (each README path and its out-of-order and late
variants) runs through the coordinator's engine; after every input, the generic fold of the
log so far (:func:`projections.sagas_model.fold_saga` with the order definition) and the
order model (:func:`projections.model.fold_order`) must tell the same story: status (the
order model's running statuses are the definition's milestones), cancel reason, current step,
steps done, compensations acknowledged.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from projections.model import OrderView, fold_order
from projections.sagas_model import CANCELLED, RUNNING, SagaView, fold_saga
from projections.sagas_store import SAGA_STATUS_COLUMNS, row_tuple
from projections.store import ORDER_STATUS_COLUMNS, status_tuple
from sagas.order import V1 as ORDER
from tests.unit.saga_coordinator.engine.test_order_equivalence import PATHS

from .saga_log import LoggedRun


def _agree(order: OrderView, saga: SagaView, where: str) -> None:
    expected_status = saga.milestone if saga.status == RUNNING else saga.status
    assert order.status == expected_status, where
    assert order.cancel_reason == saga.reason, where
    if order.current_step is None:
        assert saga.current_steps == [] or order.status == "needs_attention", where
    else:
        assert saga.current_steps[:1] == [order.current_step], where
    assert order.steps_done == saga.steps_done, where
    # The order model counts the email step on a cancelled order, which never sends it; the
    # generic model leaves an optional step the saga ended without off the path.
    not_taken = sum(1 for s in saga.steps if not s.on_path and s.kind == "step")
    assert order.steps_expected == saga.steps_expected + not_taken, where
    assert order.compensations_done == sorted(
        c.command for c in saga.compensations if c.acknowledged_at is not None
    ), where


@pytest.mark.parametrize("path", list(PATHS))
def test_every_order_path_agrees_with_the_order_model(path: str) -> None:
    run = LoggedRun(ORDER, "ord-1")
    actions: list[tuple[Any, ...]] = PATHS[path]
    for number, action in enumerate(actions, 1):
        if action[0] == "send":
            _, factory, producer = action
            run.send(factory(), producer)
        else:
            run.wait(action[1])
        where = f"{path} #{number}"
        _agree(fold_order("ord-1", run.log), fold_saga(ORDER, "ord-1", run.log), where)


def test_the_fold_depends_on_the_set_of_events_not_their_order() -> None:
    run = LoggedRun(ORDER, "ord-1")
    for action in PATHS["shipment failed"]:
        run.send(action[1](), action[2])
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
    # datetimes must read back exactly as the views' to_json shows them.
    run = LoggedRun(ORDER, "ord-1")
    for action in PATHS[path]:
        if action[0] == "send":
            run.send(action[1](), action[2])
        else:
            run.wait(action[1])
    saga, order = fold_saga(ORDER, "ord-1", run.log), fold_order("ord-1", run.log)
    saga_row = dict(zip(SAGA_STATUS_COLUMNS, row_tuple(saga), strict=True))
    assert orjson.loads(saga_row["timeline"]) == [s.to_json() for s in saga.steps]
    assert orjson.loads(saga_row["compensations"]) == [c.to_json() for c in saga.compensations]
    order_row = dict(zip(ORDER_STATUS_COLUMNS, status_tuple(order), strict=True))
    assert orjson.loads(order_row["timeline"]) == [s.to_json() for s in order.timeline]
    assert any(s.finished_at for s in order.timeline)
