"""`choreo demo`: one sample saga per path of every shipped saga on a running platform, live."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from choreo.cli.common import JsonFlag, console, out, print_json, traced_cli
from events.settings import get_settings

if TYPE_CHECKING:
    from choreo.demo import DemoSaga

STATUS_COLORS = {"completed": "green", "cancelled": "yellow"}


def _table(sagas: list[DemoSaga]) -> Table:
    table = Table("saga", "scenario", "key", "status", "reason / notes", "what it shows")
    for s in sagas:
        color = STATUS_COLORS.get(s.status, "cyan")
        table.add_row(s.saga_type, s.scenario, s.key, f"[{color}]{s.status}[/]", s.detail, s.shows)
    return table


def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every saga.")] = 120.0,
    as_json: JsonFlag = False,
) -> None:
    """Start one sample saga per path of every shipped saga on a running platform (`choreo
    run`): an order per order path, then returns of their items per returns path; approve the
    large ones, and show how each ends. Exit code 1 if any saga did not finish in time."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.demo import run_demo

    traced_cli()
    with Live(_table([]), console=out, refresh_per_second=4, transient=as_json) as live:
        sagas = asyncio.run(
            run_demo(get_settings(), on_update=lambda o: live.update(_table(o)), timeout_s=timeout)
        )
    if as_json:
        print_json(
            [
                {
                    "saga_type": s.saga_type,
                    "scenario": s.scenario,
                    "key": s.key,
                    "status": s.status,
                    "cancel_reason": s.cancel_reason,
                    "notes": s.notes,
                }
                for s in sagas
            ]
        )
    if not all(s.done for s in sagas):
        console.print("[red]some sagas did not finish; is `choreo run` running?[/]")
        raise typer.Exit(1)
