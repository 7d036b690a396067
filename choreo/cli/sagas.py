"""`choreo sagas`: the saga definitions the coordinator runs, as tables and Mermaid flows."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from choreo.cli.common import JsonFlag, fail, out, print_json
from events.errors import ChoreoError
from saga_coordinator.context import get_coordinator_settings
from sagas.drawing import mermaid, rows
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

app = typer.Typer(help="Inspect the saga definitions the coordinator runs.")


def _running() -> SagaRegistry:
    """The definitions with the knobs the coordinator would run them with (CHOREO_SAGA_*)."""
    return SAGAS.with_knobs(get_coordinator_settings().definition_overrides())


@app.command("definitions")
def sagas_definitions(as_json: JsonFlag = False) -> None:
    """Every saga type with its versions; new sagas start on the highest."""
    registry = _running()
    found: list[dict[str, Any]] = [
        {
            "saga_type": saga_type,
            "versions": registry.versions(saga_type),
            "start": registry.current(saga_type).start.event_type,
            "key": registry.current(saga_type).key,
        }
        for saga_type in registry.types
    ]
    if as_json:
        print_json(found)
        return
    table = Table("saga type", "versions", "started by", "key")
    for d in found:
        table.add_row(d["saga_type"], ", ".join(map(str, d["versions"])), d["start"], d["key"])
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return (
            f"{value['command']} (ack {value['acknowledged_by']}, every "
            f"{value['ack_timeout']}, at most {value['max_attempts']} sends)"
        )
    if isinstance(value, list):
        return "\n".join(map(str, value)) or "-"
    return str(value)


@app.command("show")
def sagas_show(
    saga_type: Annotated[str, typer.Argument(help="The saga type, e.g. order.")],
    version: Annotated[
        int | None, typer.Option("--version", help="A version (default: the newest).")
    ] = None,
    as_mermaid: Annotated[
        bool, typer.Option("--mermaid", help="Print only the Mermaid flow.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """A definition: its steps, what starts and ends each, branches and joins, deadlines and
    compensations (with the knobs in force), then its flow as a Mermaid diagram."""
    registry = _running()
    try:
        d = registry.current(saga_type) if version is None else registry.get(saga_type, version)
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))
    if as_json:
        print_json(
            {
                "saga_type": d.saga_type,
                "version": d.version,
                "key": d.key,
                "start": d.start.event_type,
                "reasons": list(d.reasons),
                "knobs": {k: str(v) for k, v in d.knob_values().items()},
                "steps": rows(d),
                "mermaid": mermaid(d),
            }
        )
        return
    if as_mermaid:
        out.print(mermaid(d), end="", markup=False, highlight=False)
        return
    out.print(f"[bold]{d.saga_type}[/] v{d.version}: started by {d.start.event_type}, key {d.key}")
    table = Table("step", "after", "triggered by", "succeeds on", "fails on", "deadlines", "undo")
    for row in rows(d):
        name = row["step"] if row["critical"] else f"{row['step']} (optional)"
        if row["when"]:
            name = f"{name}\nwhen {row['when']}"
        table.add_row(
            name,
            _cell(row["after"]),
            _cell(row["triggered_by"]),
            _cell(row["succeeds_on"]),
            _cell(row["fails_on"]),
            _cell(row["deadlines"]),
            _cell(row["compensation"]),
        )
    out.print(table)
    out.print("cancel reasons: " + ", ".join(d.reasons))
    out.print("\n[dim]Mermaid (paste into any Mermaid viewer):[/]")
    out.print(mermaid(d), end="", markup=False, highlight=False)
