"""`choreo sagas`: the definitions the coordinator runs, with the knobs in force."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from choreo.cli import app
from saga_coordinator.context import get_coordinator_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings():
    get_coordinator_settings.cache_clear()
    yield
    get_coordinator_settings.cache_clear()


def test_show_prints_steps_compensations_and_the_mermaid_flow():
    result = runner.invoke(app, ["sagas", "show", "order"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("order v1: started by order.placed", "payment.refund", "email (optional)",
                 "when total ≥ approval threshold", "flowchart LR",
                 "shipping -- shipment.scheduled --> crm"):  # fmt: skip
        assert text in result.output, text


def test_show_uses_the_knobs_the_coordinator_would_run_with(monkeypatch):
    monkeypatch.setenv("CHOREO_SAGA_PAYMENT_DEADLINE_S", "60")
    result = runner.invoke(app, ["sagas", "show", "order", "--json"])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    payment = next(step for step in shown["steps"] if step["step"] == "payment")
    assert payment["deadlines"] == "answer 60s → payment_timeout"
    assert shown["mermaid"].startswith("flowchart LR")


def test_mermaid_only_and_definitions():
    mermaid = runner.invoke(app, ["sagas", "show", "order", "--mermaid"])
    assert mermaid.output.startswith("flowchart LR\n")
    listed = runner.invoke(app, ["sagas", "definitions", "--json"])
    assert orjson.loads(listed.output) == [
        {"saga_type": "order", "versions": [1], "start": "order.placed", "key": "order_id"},
        {"saga_type": "return", "versions": [1], "start": "return.requested", "key": "return_id"},
    ]


def test_an_unknown_type_or_version_is_a_clear_error():
    unknown = runner.invoke(app, ["sagas", "show", "returns"])
    assert unknown.exit_code == 1
    assert "no saga type 'returns'; known: order, return" in unknown.output
    old = runner.invoke(app, ["sagas", "show", "order", "--version", "7"])
    assert old.exit_code == 1
    assert "no saga definition order v7" in old.output
