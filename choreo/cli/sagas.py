"""`choreo sagas`: the saga definitions the coordinator runs (tables, Mermaid flows); start one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import orjson
import pydantic
import typer
from rich.table import Table

from choreo.cli.common import JsonFlag, fail, out, print_json, traced_cli
from choreo.client import ChoreoClient
from events.errors import ChoreoError
from events.model import Event, Message
from saga_coordinator.context import get_coordinator_settings
from sagas.drawing import mermaid, rows
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

app = typer.Typer(help="The saga definitions the coordinator runs; start a saga of any type.")


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


@app.command("start")
def sagas_start(
    saga_type: Annotated[str, typer.Argument(help="The saga type, e.g. `return`.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="The start event's fields as JSON.")],
    key: Annotated[str | None, typer.Option(help="The saga's key (default: generated).")] = None,
) -> None:
    """Start a saga of any type: publish its start event from `--file` and print its key.

    The file holds the fields of the event that starts SAGA_TYPE (`choreo sagas show TYPE`
    names it); they are checked against its schema before anything is published.
    """
    try:
        model = _running().current(saga_type).start.event
        event = model.model_validate(orjson.loads(file.read_bytes()))
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}" for e in exc.errors()
        )
        fail(ChoreoError(f"invalid {model.event_type}: {problems}"))
    except (OSError, orjson.JSONDecodeError) as exc:
        fail(ChoreoError(f"cannot read {file}: {exc}"))

    async def start() -> Message[Event]:
        async with ChoreoClient() as client:
            return await client.start_saga(saga_type, event, key)

    traced_cli()
    try:
        out.print(asyncio.run(start()).saga_key)
    except ChoreoError as exc:
        fail(exc)
