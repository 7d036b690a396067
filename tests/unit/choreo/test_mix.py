"""The order mix of `choreo bench` and `choreo chaos`: weights, assignment, expected endings."""

from __future__ import annotations

from collections import Counter

import pytest

from choreo.mix import EXPECTED, assign_scenarios, parse_mix, warm_up_scenarios
from contracts.samples import SCENARIOS


def test_mix_is_parsed_into_weights():
    assert parse_mix("happy=70,large=10, declined=10,unshippable=10") == {
        "happy": 70, "large": 10, "declined": 10, "unshippable": 10,
    }  # fmt: skip
    assert parse_mix("happy") == {"happy": 1}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("happy=70,nope=3", "unknown scenario 'nope'"),
        ("happy=x", "must be an integer"),
        ("happy=-1", "must not be negative"),
        ("happy=0", "no positive weight"),
    ],
)
def test_a_bad_mix_is_refused_with_a_reason(text, error):
    with pytest.raises(ValueError, match=error):
        parse_mix(text)


def test_scenarios_are_assigned_in_exact_proportions_reproducibly():
    mix = {"happy": 70, "large": 10, "declined": 10, "unshippable": 10}
    names = assign_scenarios(mix, 2000)
    assert Counter(names) == {"happy": 1400, "large": 200, "declined": 200, "unshippable": 200}
    assert names == assign_scenarios(mix, 2000)
    assert names[:50] != sorted(names[:50])  # shuffled


def test_remainders_go_to_the_largest_fractions():
    counts = Counter(assign_scenarios({"happy": 1, "large": 1, "declined": 1}, 5))
    assert sum(counts.values()) == 5
    assert sorted(counts.values()) == [1, 2, 2]


def test_every_scenario_has_an_expected_outcome():
    assert set(EXPECTED) == set(SCENARIOS)


def test_a_warm_up_runs_every_scenario_then_the_mix_in_its_proportions():
    mix = {"happy": 7, "large": 1, "declined": 2, "flaky": 0}
    warm = warm_up_scenarios(mix, 300)
    assert warm[:3] == ["happy", "large", "declined"]  # every path with a weight, first
    assert Counter(warm[3:]) == {"happy": 210, "large": 30, "declined": 60}
    assert warm_up_scenarios(mix, 0) == ["happy", "large", "declined"]
