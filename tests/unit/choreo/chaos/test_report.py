"""The chaos report: endings per scenario, the verdict, its JSON and its tables."""

from __future__ import annotations

from rich.console import Console

from choreo.chaos.faults import FaultResult
from choreo.chaos.invariants import Check
from choreo.chaos.plan import ChaosConfig
from choreo.chaos.report import ChaosReport, tables
from choreo.chaos.snapshot import OrderView, ReturnView


def report() -> ChaosReport:
    config = ChaosConfig(orders=3, rate=1, mix={"happy": 2, "declined": 1}, faults=("kill",))
    result = ChaosReport(config, "2026-12-02T19:00:00+00:00")
    result.count_outcomes(
        [
            OrderView("ord-1", "happy", "completed"),
            OrderView("ord-2", "happy", "cancelled", "payment_timeout", ("payment",)),
            OrderView("ord-3", "declined", "cancelled", "payment_declined"),
        ],
        [
            ReturnView("ret-1", "happy", "completed"),
            ReturnView("ret-2", "damaged", "cancelled", "inspection_failed"),
            ReturnView("ret-3", "unpaid", "completed"),
        ],
    )
    result.faults = [FaultResult("kill", "payment", 1.0, 1.2, "pid 7 killed")]
    result.checks = [Check("every saga terminal", 3)]
    return result


def test_endings_are_counted_per_scenario_and_unexpected_ones_told():
    result = report()
    assert result.outcomes == {
        "declined": {"cancelled:payment_declined": 1},
        "happy": {"completed": 1, "cancelled:payment_timeout": 1},
        "return damaged": {"cancelled:inspection_failed": 1},
        "return happy": {"completed": 1},
        "return unpaid": {"completed": 1},
    }
    # The timed-out payment, and a return of a declined order refunded from nothing.
    assert result.unexpected == 2


def test_a_violation_or_a_fault_not_injected_fails_the_run():
    result = report()
    assert result.held
    result.checks[0].fail("ord-9 is placed")
    assert not result.held
    result = report()
    result.faults[0].error = "ProcessNotFound: no running payment"
    assert not result.held


def test_the_json_and_the_tables_carry_the_verdicts():
    result = report()
    result.checks.append(Check("stock conserved", 5, 1, ["SKU-RED-MUG: 1+0+0 != 2"]))
    document = result.to_json()
    assert document["held"] is False
    assert document["invariants"][1] == {
        "name": "stock conserved", "checked": 5, "violations": 1,
        "examples": ["SKU-RED-MUG: 1+0+0 != 2"], "held": False,
    }  # fmt: skip
    assert document["config"]["faults"] == ["kill"]
    console = Console(width=200, record=True)
    for table in tables(result):
        console.print(table)
    text = console.export_text()
    assert "SKU-RED-MUG: 1+0+0 != 2" in text
    assert "pid 7 killed" in text
