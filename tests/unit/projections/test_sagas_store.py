"""Which saga a key belongs to, and saga_status rows as stored and as shown."""

from __future__ import annotations

from typing import Any

from projections.sagas_model import fold_saga
from projections.sagas_store import SAGA_STATUS_COLUMNS, fold_all, row_json, row_tuple, saga_of
from sagas.order import V1 as ORDER
from sagas.registry import SagaRegistry
from tests.unit.saga_coordinator.engine.trip import TRIP, placed, reserved

from .saga_log import LoggedRun


def test_the_start_event_names_the_saga_and_a_known_row_keeps_it() -> None:
    log = LoggedRun(ORDER).send(placed()).send(reserved()).log
    assert saga_of(log, None) is ORDER
    assert saga_of(list(reversed(log)), None) is ORDER
    assert saga_of(log[1:], None) is None  # no start event, no row: no known saga
    assert saga_of(log[1:], ("order", 1)) is ORDER


def test_of_two_types_on_one_start_event_the_coordinators_choice_wins() -> None:
    both = SagaRegistry([TRIP, ORDER])
    # Both start on order.placed here: the first type by name wins, as the coordinator's
    # SagaRegistry.starting decides; a row of the other type keeps its saga.
    log = LoggedRun(ORDER).send(placed()).log
    assert saga_of(log, None, both) is ORDER
    assert both.starting(placed()) is ORDER
    found = saga_of(log, ("trip", 1), both)
    assert found is not None
    assert found.saga_type == "trip"


def test_a_row_of_an_unknown_version_is_left_alone() -> None:
    log = LoggedRun(ORDER).send(placed()).log
    assert saga_of(log, ("order", 99)) is None
    assert fold_all({"ord-1": log}, {"ord-1": ("order", 99)}) == []


def test_a_stored_row_reads_back_as_the_fold_shows_it() -> None:
    run = LoggedRun(ORDER).send(placed(250_000)).send(reserved())
    view = fold_saga(ORDER, "ord-1", run.log)
    row: dict[str, Any] = dict(zip(SAGA_STATUS_COLUMNS, row_tuple(view), strict=True))
    assert row_json(row) == view.to_json()
    assert row_json(row)["status"] == "awaiting_approval"
    assert row_json(row)["current_steps"] == ["approval"]
