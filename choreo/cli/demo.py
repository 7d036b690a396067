"""`choreo demo`: one sample saga per path of every shipped saga on a running platform, live."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Column, Table

from choreo.cli.common import WIDE, JsonFlag, console, out, print_json, readable, traced_cli
from events.settings import get_settings

if TYPE_CHECKING:
    from choreo.demo import DemoSaga

STATUS_COLORS = {"completed": "green", "cancelled": "yellow"}


def _view(sagas: list[DemoSaga], width: int) -> RenderableType:
    """The sagas as a table: keys whole (to copy into `choreo orders status`), reasons wrapped
    rather than cut; on a narrow terminal what each path shows follows the table."""
    wide = width >= WIDE
    table = Table(
        "saga", "scenario", "key", "status", Column("reason / notes", overflow="fold"),
        *(["what it shows"] if wide else []),
    )  # fmt: skip
    for s in sagas:
        color = "red" if s.unexpected else STATUS_COLORS.get(s.status, "cyan")
        shows = [s.shows] if wide else []
        table.add_row(s.saga_type, s.scenario, s.key, f"[{color}]{s.status}[/]", s.detail, *shows)
    readable(table, "key")
    if wide or not sagas:
        return table
    legend = Table.grid(padding=(0, 1))
    legend.add_column(style="bold", no_wrap=True)
    legend.add_column()
    for s in sagas:
        legend.add_row(f"{s.saga_type} {s.scenario}", s.shows)
    return Group(table, "What each path shows:", legend)


def demo(
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for every saga.")] = 120.0,
    as_json: JsonFlag = False,
) -> None:
    """Start one sample saga per path of every shipped saga on a running platform (`choreo
    run`): an order per order path, then returns of their items per returns path; approve the
    large ones, and show how each ends. Exit code 1 if any saga did not finish in time.

    A saga that ended otherwise than its path does is named after the table, with what that
    may mean (an order cancelled out of stock: this checkout's stock was used up by earlier
    orders)."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.demo import run_demo

    traced_cli()
    with Live(_view([], out.width), console=out, refresh_per_second=4, transient=as_json) as live:
        sagas = asyncio.run(
            run_demo(
                get_settings(),
                on_update=lambda o: live.update(_view(o, out.width)),
                timeout_s=timeout,
            )
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
                    "shows": s.shows,
                    "expected": s.expected,
                    "as_expected": not s.unexpected,
                }
                for s in sagas
            ]
        )
    else:
        _say_unexpected(sagas)
    if not all(s.done for s in sagas):
        console.print("[red]some sagas did not finish; is `choreo run` running?[/]")
        raise typer.Exit(1)


def _say_unexpected(sagas: list[DemoSaga]) -> None:
    """Name each saga that ended otherwise than its path, and the likely cause."""
    odd = [s for s in sagas if s.unexpected]
    for s in odd:
        console.print(
            f"[red]{s.saga_type} {s.scenario} ({s.key}) ended {s.ended}; its path ends"
            f" {s.expected}[/]"
        )
    if any(s.saga_type == "order" and s.ended == "cancelled:out_of_stock" for s in odd):
        console.print(
            "[yellow]The inventory is seeded once, at its first start: earlier orders on this"
            " checkout used up the stock the samples need. `make clean` stops everything and"
            " deletes its state (every saga, event and token); `make run` then starts afresh.[/]"
        )
    elif odd:
        console.print(
            "[yellow]`choreo sagas history TYPE KEY` shows each saga's steps; the processes'"
            " logs are in .state/run.log.[/]"
        )
