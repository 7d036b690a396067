"""`choreo run --replicas`: what it refuses before starting anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from choreo.cli import app
from events.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--replicas", "api=2"], {}, "api listens on one port"),
        (["--replicas", "payment"], {}, "'payment' is not NAME=N"),
        ([], {"CHOREO_REPLICAS": "billing=2"}, "unknown process 'billing'"),
    ],
)
def test_bad_replicas_fail_before_any_process_starts(
    args: list[str], env: dict[str, str], error: str
):
    result = runner.invoke(app, ["run", *args], env={"COLUMNS": "200", **env})
    assert result.exit_code == 1, result.output
    assert error in result.output
