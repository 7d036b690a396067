"""`choreo demo`: one sample order per saga path on a running platform, shown live."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from choreo.cli.common import JsonFlag, console, out, print_json, traced_cli
from contracts.samples import SCENARIOS
from events.settings import get_settings

if TYPE_CHECKING:
    from choreo.demo import DemoOrder

STATUS_COLORS = {"completed": "green", "cancelled": "yellow"}


def _table(orders: list[DemoOrder]) -> Table:
    table = Table("scenario", "order", "status", "reason / notes", "what it shows")
    for o in orders:
        color = STATUS_COLORS.get(o.status, "cyan")
        table.add_row(
            o.scenario, o.order_id, f"[{color}]{o.status}[/]", o.detail, SCENARIOS[o.scenario]
        )
    return table


def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every order.")] = 120.0,
    as_json: JsonFlag = False,
) -> None:
    """Place one sample order per saga path on a running platform (`choreo run`), approve the
    large one, and show how each ends. Exit code 1 if any order did not finish in time."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.demo import run_demo

    traced_cli()
    with Live(_table([]), console=out, refresh_per_second=4, transient=as_json) as live:
        orders = asyncio.run(
            run_demo(get_settings(), on_update=lambda o: live.update(_table(o)), timeout_s=timeout)
        )
    if as_json:
        print_json(
            [
                {
                    "scenario": o.scenario,
                    "order_id": o.order_id,
                    "status": o.status,
                    "cancel_reason": o.cancel_reason,
                    "notes": o.notes,
                }
                for o in orders
            ]
        )
    if not all(o.done for o in orders):
        console.print("[red]some orders did not finish; is `choreo run` running?[/]")
        raise typer.Exit(1)
