"""Choreo's processes run the cyclic garbage collector's young generation less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from events.service import tune_collector
from events.settings import Settings


@pytest.fixture(autouse=True)
def python_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_young_generation_waits_for_the_configured_allocations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("CHOREO_GC_YOUNG_OBJECTS", "20000")
    tune_collector(Settings())
    assert gc.get_threshold() == (20_000, 10, 10)  # the older generations keep their ratio


def test_the_default_is_far_above_pythons(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.set_threshold(700, 10, 10)
    monkeypatch.delenv("CHOREO_GC_YOUNG_OBJECTS", raising=False)
    tune_collector(Settings())
    assert gc.get_threshold()[0] == 50_000


def test_zero_keeps_pythons_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("CHOREO_GC_YOUNG_OBJECTS", "0")
    tune_collector(Settings())
    assert gc.get_threshold() == (700, 10, 10)
