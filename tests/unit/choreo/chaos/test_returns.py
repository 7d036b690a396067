"""Which of a chaos run's orders get a return, and which return."""

from __future__ import annotations

from choreo.chaos.returns import EXPECTED, ReturnPlan
from contracts.return_samples import RETURN_SCENARIOS


def test_a_share_of_the_orders_is_chosen_the_same_way_each_time():
    ids = [f"ord-{i:012x}" for i in range(2000)]
    chosen = [i for i in ids if ReturnPlan(30).chosen(i)]
    assert 500 <= len(chosen) <= 700
    assert chosen == [i for i in ids if ReturnPlan(30).chosen(i)]
    assert not any(ReturnPlan(0).chosen(i) for i in ids)
    assert all(ReturnPlan(100).chosen(i) for i in ids)


def test_each_return_of_an_orders_scenario_comes_in_turn_after_the_ending_it_needs():
    plan = ReturnPlan(100)
    delivered = [plan.scenario_for(f"ord-{i}", "happy", "order.completed") for i in range(6)]
    assert delivered == ["happy", "unpickable", "damaged"] * 2
    assert plan.scenario_for("ord-big", "large", "order.completed") == "large"
    assert plan.scenario_for("ord-no", "declined", "order.cancelled") == "unpaid"
    # No return of an order that did not end as the return needs, or of a scenario without one.
    assert plan.scenario_for("ord-x", "happy", "order.cancelled") is None
    assert plan.scenario_for("ord-y", "declined", "order.completed") is None
    assert plan.scenario_for("ord-z", "unshippable", "order.cancelled") is None
    assert ReturnPlan(0).scenario_for("ord-0", "happy", "order.completed") is None


def test_every_return_scenario_has_its_expected_ending():
    assert EXPECTED.keys() == RETURN_SCENARIOS.keys()
