"""`choreo sagas activity TYPE`: how one saga type is doing (:mod:`projections.sagas_activity`,
as the API's ``GET /sagas/activity`` and the console under the type's list show it): the
minutes in which its sagas started or ended, with their latency, each step's latency and the
reasons its sagas were cancelled for."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Column, Table

from choreo.cli.common import JsonFlag, out, print_json, readable
from choreo.cli.sagas import (
    SagaType,
    app,
    read_sagas,
    refuse_an_unknown_type,
    running_definitions,
)
from projections.console.charts import duration_ms, label


@app.command("activity")
def sagas_activity(
    saga_type: SagaType,
    minutes: Annotated[
        int, typer.Option(min=1, max=1440, help="The window of the per-minute figures.")
    ] = 30,
    as_json: JsonFlag = False,
) -> None:
    """How one saga type is doing: sagas started and ended per minute with their latency
    (start → end, p50/p95), each step's latency over the type's latest 2,000 sagas, cancel
    reasons."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from projections import sagas_activity as activity

    registry = running_definitions()
    refuse_an_unknown_type(registry, saga_type)
    found = read_sagas(lambda q: activity.activity(q, registry, saga_type, minutes=minutes))
    if as_json:
        print_json({"saga_type": saga_type, "minutes": minutes, **found})
        return
    started = sum(p["started"] for p in found["started"])
    ended = sum(p["n"] for p in found["latency"])
    out.print(f"{saga_type} sagas, last {minutes} minutes: {started} started, {ended} ended")
    out.print(_minutes(found))
    out.print(_steps(found["steps"]))
    reasons = found["reasons"]
    if reasons:
        ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        out.print("cancelled: " + ", ".join(f"{label(r)} {n}" for r, n in ranked))


def _minutes(found: dict[str, Any]) -> Table | str:
    """The minutes in which a saga started or ended (the others left out)."""
    table = Table(
        "minute (UTC)", *(Column(h, justify="right") for h in ("started", "ended", "p50", "p95"))
    )
    for started, ended in zip(found["started"], found["latency"], strict=True):
        if started["started"] or ended["n"]:
            table.add_row(
                started["minute"][11:16],
                str(started["started"]),
                str(ended["n"]),
                duration_ms(ended["p50"]),
                duration_ms(ended["p95"]),
            )
    return readable(table, "minute (UTC)") if table.row_count else "no saga started or ended"


def _steps(steps: dict[str, dict[str, float]]) -> Table | str:
    table = Table("step", *(Column(h, justify="right") for h in ("p50", "p95", "n")))
    for step, d in steps.items():
        table.add_row(step, duration_ms(d["p50"]), duration_ms(d["p95"]), str(int(d["count"])))
    return readable(table, "step") if steps else "no finished step yet"
