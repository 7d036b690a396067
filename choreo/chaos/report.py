"""A chaos run's report: what was placed and injected, how orders ended, and the invariants.

:meth:`ChaosReport.to_json` is what ``--json`` prints; :func:`tables` what the terminal shows.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

from choreo.chaos.faults import FaultResult
from choreo.chaos.invariants import Check
from choreo.chaos.plan import ChaosConfig
from choreo.chaos.returns import EXPECTED as RETURN_EXPECTED
from choreo.chaos.snapshot import OrderView, ReturnView
from choreo.mix import EXPECTED

RETURN = "return "
"""How the outcomes name a return scenario (``return happy``) beside the order scenarios."""


def outcome(saga: OrderView | ReturnView) -> str:
    """``completed``, ``cancelled:<reason>``, or the status of a saga that did not end."""
    if saga.status == "cancelled":
        return f"cancelled:{saga.cancel_reason}"
    return saga.status


def expected(scenario: str) -> str | None:
    """How a saga of ``scenario`` (an order's, or ``return <name>``) ends."""
    if scenario.startswith(RETURN):
        return RETURN_EXPECTED.get(scenario.removeprefix(RETURN))
    return EXPECTED.get(scenario)


@dataclass
class ChaosReport:
    """Everything a chaos run found (see the module docstring)."""

    config: ChaosConfig
    started_at: str
    seconds: float = 0.0
    placed: int = 0
    returned: int = 0
    """Returns the run asked for."""
    quiet: bool = False
    approved: int = 0
    resent: int = 0
    retried: int = 0
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: int = 0
    cancelled_by_deadline: int = 0
    faults: list[FaultResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent placing (with the faults), waiting for quiescence, reading, rebuilding."""

    @property
    def held(self) -> bool:
        """Whether every invariant held and every fault could be injected."""
        faults_ok = all(fault.error is None for fault in self.faults)
        return faults_ok and all(check.held for check in self.checks)

    def lap(self, phase: str, since: float) -> float:
        """Record the seconds ``phase`` took since ``since`` (monotonic); returns now."""
        now = time.monotonic()
        self.phases[phase] = now - since
        return now

    def count_outcomes(
        self, orders: list[OrderView], returns: list[ReturnView] | None = None
    ) -> None:
        """Fill ``outcomes`` (per scenario; a return's as ``return <scenario>``) and
        ``unexpected`` (not the scenario's ending)."""
        by_scenario: dict[str, Counter[str]] = {}
        sagas: list[tuple[str, OrderView | ReturnView]] = [(o.scenario, o) for o in orders]
        sagas += [(RETURN + r.scenario, r) for r in returns or []]
        for scenario, saga in sagas:
            ending = outcome(saga)
            by_scenario.setdefault(scenario, Counter())[ending] += 1
            if ending != expected(scenario):
                self.unexpected += 1
        self.outcomes = {name: dict(counts) for name, counts in sorted(by_scenario.items())}

    def to_json(self) -> dict[str, Any]:
        return {
            "held": self.held,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 1),
            "config": {**asdict(self.config), "faults": list(self.config.faults)},
            "placed": self.placed,
            "returned": self.returned,
            "quiet": self.quiet,
            "approved": self.approved,
            "resent": self.resent,
            "retried": self.retried,
            "outcomes": self.outcomes,
            "unexpected": self.unexpected,
            "cancelled_by_deadline": self.cancelled_by_deadline,
            "phases": {name: round(seconds, 1) for name, seconds in self.phases.items()},
            "faults": [asdict(fault) for fault in self.faults],
            "invariants": [{**asdict(check), "held": check.held} for check in self.checks],
        }


def tables(report: ChaosReport) -> list[Table]:
    """The faults, the outcomes and the invariants as three tables."""
    faults = Table(title="faults", title_justify="left")
    for column in ("at s", "fault", "target", "took s", "result"):
        faults.add_column(column)
    for fault in report.faults:
        result = f"[red]{fault.error}[/]" if fault.error else fault.detail
        faults.add_row(
            f"{fault.at_s:.1f}", fault.kind, fault.target, f"{fault.seconds:.1f}", result
        )
    outcomes = Table(title="outcomes", title_justify="left")
    for column in ("scenario", "ending", "sagas", "expected"):
        outcomes.add_column(column)
    for scenario, counts in report.outcomes.items():
        for ending, count in sorted(counts.items()):
            as_expected = "yes" if expected(scenario) == ending else "[yellow]no[/]"
            outcomes.add_row(scenario, ending, str(count), as_expected)
    checks = Table(title="invariants", title_justify="left")
    for column in ("invariant", "checked", "violations", "examples"):
        checks.add_column(column)
    for check in report.checks:
        verdict = "0" if check.held else f"[bold red]{check.violations}[/]"
        checks.add_row(check.name, str(check.checked), verdict, "\n".join(check.examples[:3]))
    return [faults, outcomes, checks]
