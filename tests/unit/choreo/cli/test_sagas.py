"""`choreo sagas`: the definitions the coordinator runs, with the knobs in force, and the
sagas of the read model as `status`, `list` and `history` print them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from choreo.cli import app
from choreo.cli import sagas as sagas_cli
from projections.sagas_model import fold_saga
from saga_coordinator.context import get_coordinator_settings
from sagas.order import V1 as ORDER
from tests.unit.projections.saga_log import LoggedRun
from tests.unit.saga_coordinator.flow import (
    charged,
    out_of_stock,
    placed,
    refunded,
    reserved,
    shipment_failed,
)

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


def test_show_at_80_columns_is_a_block_per_step_with_nothing_cut():
    result = runner.invoke(app, ["sagas", "show", "order"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output
    # The step's name on a line of its own, each of its facts on the lines under it.
    payment = lines.index("payment")
    assert lines[payment + 1].split() == ["after", "approval"]
    facts = " ".join(lines[payment + 1 : payment + 7])
    for text in ("triggered by order.approved", "succeeds on  payment.charged",
                 "payment.declined → payment_declined", "answer 30s → payment_timeout",
                 "payment.refund (ack payment.refunded"):  # fmt: skip
        assert text in facts, text
    assert "approval · when total ≥ approval threshold" in lines


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


def _saga_row() -> dict[str, Any]:
    run = LoggedRun(ORDER, "ord-9").send(placed()).send(reserved()).auto()
    run.send(charged()).send(shipment_failed()).send(refunded())
    return fold_saga(ORDER, "ord-9", run.log).to_json()


def test_status_list_and_history_print_the_read_model(monkeypatch):
    row = _saga_row()
    # What `status` reads: the row, and the sagas that name it (a return of the order).
    named = {
        **row,
        "named_by": [{"saga_type": "return", "saga_key": "ret-1", "status": "completed"}],
    }
    history = [{"occurred_at": "2026-12-02T12:00:00.000+00:00", "event_type": "order.placed",
                "producer": "cli", "summary": "1 item(s)"}]  # fmt: skip
    answers = iter([named, [row], history, named])
    monkeypatch.setattr(sagas_cli, "query", lambda call: next(answers))
    env = {"COLUMNS": "200"}
    status = runner.invoke(app, ["sagas", "status", "order", "ord-9"], env=env)
    assert status.exit_code == 0, status.output
    for text in ("order ord-9 v1 compensating", "steps: compensation", "progress: 3/5",
                 "shipment.failed", "compensations", "acknowledged",
                 "started with: customer id cust-", "total 25.99 EUR",
                 "named by: return ret-1 (completed)"):  # fmt: skip
        assert text in status.output, text
    # A row per compensation: the step it undoes, its command, and its acknowledgement or not.
    undo = [line.split("│")[1:6] for line in status.output.splitlines() if "│ payment " in line
            or "│ inventory " in line]  # fmt: skip
    cells = [[cell.strip() for cell in row] for row in undo if "." in row[1]]
    assert [(c[0], c[1], c[4] == "open") for c in cells] == [
        ("payment", "payment.refund", False),
        ("inventory", "inventory.release", True),
    ], status.output
    listed = runner.invoke(app, ["sagas", "list", "--type", "order"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "ord-9" in listed.output
    assert "compensating" in listed.output
    told = runner.invoke(app, ["sagas", "history", "order", "ord-9"], env=env)
    assert told.exit_code == 0, told.output
    assert "order.placed" in told.output
    as_json = runner.invoke(app, ["sagas", "status", "order", "ord-9", "--json"])
    assert orjson.loads(as_json.stdout) == named


def test_a_step_an_ended_saga_never_started_says_so(monkeypatch):
    ended = LoggedRun(ORDER, "ord-8").send(placed()).send(out_of_stock())
    row = {**fold_saga(ORDER, "ord-8", ended.log).to_json(), "named_by": []}
    assert row["status"] == "cancelled"
    monkeypatch.setattr(sagas_cli, "query", lambda call: row)
    status = runner.invoke(app, ["sagas", "status", "order", "ord-8"], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    payment = next(line for line in status.output.splitlines() if "│ payment" in line)
    assert "not started" in payment
    assert "pending" not in status.output


def test_an_unknown_saga_is_an_error(monkeypatch):
    monkeypatch.setattr(sagas_cli, "query", lambda call: None)
    result = runner.invoke(app, ["sagas", "status", "order", "ord-nope"])
    assert result.exit_code == 1
    assert "no order saga ord-nope" in result.output


def test_status_reads_at_80_columns(monkeypatch):
    # Seven columns cut every state and event name to a few letters; five, with each time's
    # event under it, keep them whole.
    monkeypatch.setattr(sagas_cli, "query", lambda call: {**_saga_row(), "named_by": []})
    status = runner.invoke(app, ["sagas", "status", "order", "ord-9"], env={"COLUMNS": "80"})
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for text in ("succeeded", "failed", "pending", "order.placed",
                 "payment.charged", "shipment.failed"):  # fmt: skip
        assert text in status.output, text
    assert not any("succeed…" in line or "shipment.fa…" in line for line in lines)


def test_status_at_80_columns_cuts_no_event_name_and_shows_the_detail(monkeypatch):
    # The returns saga's longest answer, and a detail: it was "payment.return_re…" in a fifth
    # column beside an empty "detail" one.
    row = {**_saga_row(), "named_by": []}
    failed = next(step for step in row["steps"] if step["state"] == "failed")
    failed.update(finished_by="payment.return_refund_declined", detail="no_charge")
    monkeypatch.setattr(sagas_cli, "query", lambda call: row)
    status = runner.invoke(app, ["sagas", "status", "order", "ord-9"], env={"COLUMNS": "80"})
    assert status.exit_code == 0, status.output
    assert max(len(line) for line in status.output.splitlines()) <= 80
    assert "…" not in status.output
    assert "payment.return_refund_decline" in status.output
    cells = [line.split("│")[2].strip() for line in status.output.splitlines() if "│" in line]
    assert cells[cells.index("failed") + 1] == "no_charge"  # under the state


def test_list_reads_at_80_columns(monkeypatch):
    row = {"saga_type": "return", "saga_key": "ret-121e9ee62e26", "version": 1,
           "status": "cancelled", "reason": "refund_declined", "current_steps": [],
           "progress": {"done": 3, "expected": 3},
           "started_at": "2026-12-05T04:53:19.136000+00:00"}  # fmt: skip
    monkeypatch.setattr(sagas_cli, "query", lambda call: [row])
    result = runner.invoke(app, ["sagas", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    for text in ("return", "v1", "ret-121e9ee62e26", "cancelled", "refund_declined", "3/3",
                 "12-05 04:53"):  # fmt: skip
        assert text in result.output, text


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["sagas", "list", "--type", "ordr"], "no saga type 'ordr' (the coordinator runs: "),
        (["sagas", "waiting", "--type", "ordr"], "no saga type 'ordr' (the coordinator runs: "),
        (["sagas", "activity", "ordr"], "no saga type 'ordr' (the coordinator runs: "),
        (["events", "tail", "-d", "ordr"], "no domain 'ordr' (the domains: crm, email, "),
    ],
)
def test_a_mistyped_filter_is_refused_not_taken_for_nothing_found(
    command: list[str], said: str
) -> None:
    # Refused before any broker or database is asked (none is needed here).
    result = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert said in result.output
