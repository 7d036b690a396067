"""A chaos run's fault kinds and schedule: fixed without a seed, random and reproducible with."""

from __future__ import annotations

import pytest

from choreo.chaos.plan import FAULT_KINDS, ChaosConfig, parse_faults, schedule
from choreo.registry import NAMES
from events.errors import ChoreoError


def config(faults: tuple[str, ...], seed: int | None = None) -> ChaosConfig:
    return ChaosConfig(orders=100, rate=10, mix={"happy": 1}, faults=faults, seed=seed)


def test_faults_are_parsed_and_checked():
    assert parse_faults("kill, broker,kill") == ("kill", "broker")
    assert parse_faults("all") == tuple(FAULT_KINDS)
    assert parse_faults("none") == ()
    with pytest.raises(ChoreoError, match="unknown fault"):
        parse_faults("kill,flood")


def test_without_a_seed_every_fault_is_evenly_spaced_within_the_placing_time():
    faults = schedule(config(("kill", "stop", "resend", "malformed")))
    assert [f.target for f in faults if f.kind == "kill"] == list(NAMES)
    assert [f.kind for f in faults[len(NAMES) :]] == ["stop", "resend", "malformed"]
    assert (faults[0].at_s, faults[-1].at_s) == (1.0, 8.0)  # a tenth to four fifths of 10 s
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)


def test_a_seed_gives_a_random_schedule_that_repeats():
    first = schedule(config(("kill", "stop", "malformed"), seed=7))
    assert first == schedule(config(("kill", "stop", "malformed"), seed=7))
    assert first != schedule(config(("kill", "stop", "malformed"), seed=8))
    assert all(1.0 <= f.at_s <= 8.0 for f in first)


def test_a_three_broker_cluster_restarts_a_node_and_the_quorum_leader():
    faults = schedule(config(("broker",)), brokers=3)
    assert [(f.kind, f.target) for f in faults] == [("broker", "node"), ("broker", "leader")]
    assert [f.target for f in schedule(config(("broker",)))] == ["node"]
