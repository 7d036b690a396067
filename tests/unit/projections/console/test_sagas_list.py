"""The order a saga type's statuses (the sagas index's and list's chips) and its steps (the
step latency under its list) are shown in."""

from __future__ import annotations

from projections.console.sagas_list import statuses
from projections.sagas_activity import in_path_order
from sagas.shipped import SAGAS


def test_statuses_read_in_the_order_a_saga_goes_through_them():
    assert statuses(SAGAS, "return", {}) == [
        "running", "awaiting_approval", "compensating", "needs_attention", "completed",
        "cancelled",
    ]  # fmt: skip


def test_a_status_only_the_read_model_has_comes_last():
    found = statuses(SAGAS, "return", {"cancelled": 3, "paused": 1, "archived": 2})
    assert found[-2:] == ["archived", "paused"]
    assert found.count("cancelled") == 1


def test_steps_read_in_the_order_the_definition_draws_them():
    measured = {name: {"count": 1} for name in ("refund", "approval", "email", "pickup", "gone")}
    assert list(in_path_order(SAGAS, "return", measured)) == [
        "approval", "pickup", "refund", "email", "gone",
    ]  # fmt: skip
