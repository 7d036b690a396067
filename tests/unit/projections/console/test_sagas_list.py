"""The order a saga type's statuses are shown in (the sagas index's and list's chips)."""

from __future__ import annotations

from projections.console.sagas_list import statuses
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
