"""An invalid CHOREO_* variable: the command names it and exits 2, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
from pydantic_settings import BaseSettings

from events.settings import Settings, describe_invalid_settings
from saga_coordinator.context import CoordinatorSettings

ROOT = Path(__file__).resolve().parents[4]


def described(settings_class: type[BaseSettings]) -> str:
    """What :func:`describe_invalid_settings` says of reading ``settings_class`` now."""
    with pytest.raises(pydantic.ValidationError) as raised:
        settings_class()
    description = describe_invalid_settings(raised.value)
    assert description is not None
    return description


def test_each_invalid_variable_is_named_with_its_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_GC_YOUNG_OBJECTS", "-5")
    monkeypatch.setenv("CHOREO_PROJECTOR_FETCH_WAIT_MS", "soon")
    lines = described(Settings).splitlines()
    assert lines[0] == "invalid configuration in the environment:"
    assert any(line.strip().startswith("CHOREO_GC_YOUNG_OBJECTS: ") for line in lines)
    assert any(line.strip().startswith("CHOREO_PROJECTOR_FETCH_WAIT_MS: ") for line in lines)


def test_a_settings_class_with_another_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_SAGA_TIMER_POLL_INTERVAL_MS", "1")
    assert "CHOREO_SAGA_TIMER_POLL_INTERVAL_MS: Input should be greater than or equal to 10" in (
        described(CoordinatorSettings)
    )


def test_a_variable_with_aliases_is_named_by_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "BOGUS")
    description = described(Settings)
    problems = description.splitlines()[1:]
    # Only the invalid variable: not the settings whose defaults derive from the others.
    assert len(problems) == 1, description
    assert (
        problems[0]
        .strip()
        .startswith("KAFKA_SASL_MECHANISM or CHOREO_KAFKA_SASL_MECHANISM: Input should be")
    )


def test_the_values_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_GC_YOUNG_OBJECTS", "s3cret-looking-value")
    assert "s3cret-looking-value" not in described(Settings)


def test_a_validation_error_of_anything_else_is_not_a_settings_error() -> None:
    class Order(pydantic.BaseModel):
        quantity: int

    with pytest.raises(pydantic.ValidationError) as raised:
        Order.model_validate({"quantity": "many"})
    assert describe_invalid_settings(raised.value) is None


def test_the_command_exits_2_with_the_message_and_no_traceback() -> None:
    env = {**os.environ, "CHOREO_GC_YOUNG_OBJECTS": "-5"}
    result = subprocess.run(
        [sys.executable, "-m", "choreo", "orders", "list", "--limit", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "CHOREO_GC_YOUNG_OBJECTS: Input should be greater than or equal to 0" in result.stderr
    assert "Traceback" not in result.stderr
