"""How `choreo run` and `choreo stop` say each process's stop ended."""

from __future__ import annotations

from choreo.supervisor import Stopped, summary
from events.stopping import STOP_TIMEOUT_EXIT_CODE


def test_each_way_a_stop_ends_is_named() -> None:
    assert Stopped("crm", 0, 0.4).how == "clean"
    assert Stopped("inventory", STOP_TIMEOUT_EXIT_CODE, 17.0).how == "ended by its stop timeout"
    assert Stopped("payment", -9, 20.0, killed=True).how == "killed at the grace period's end"
    assert Stopped("email", 1, 2.0).how == "exit code 1"


def test_a_clean_stop_is_one_line_and_any_other_names_the_processes() -> None:
    clean = [Stopped("crm", 0, 0.4), Stopped("email", 0, 3.3)]
    assert summary(clean) == "in 3.3 s, all 2 clean"
    mixed = [
        *clean,
        Stopped("inventory", STOP_TIMEOUT_EXIT_CODE, 17.0),
        Stopped("payment", -9, 20.1, killed=True),
    ]
    assert summary(mixed) == (
        "in 20.1 s: inventory ended by its stop timeout; payment killed at the grace period's"
        " end; 2 clean"
    )
    assert summary([]) == "in 0.0 s, all 0 clean"
