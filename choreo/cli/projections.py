"""`choreo projections`: the projector's progress, and rebuilding the read models."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from choreo.cli.common import JsonFlag, command_group, console, fail_under, out, print_json, query
from events.errors import ChoreoError
from events.settings import get_settings

if TYPE_CHECKING:
    from projections.queries import Queries
    from projections.rebuild import RebuildReport

app = command_group("Inspect and rebuild the read models.")

READ_MODELS = {"all", "saga_status", "order_history", "summary"}
"""What a rebuild may be asked for: it rebuilds them all (they come from one log)."""
INTERRUPTED = (
    "interrupted: the read models are whole; the rebuild's swap is one transaction, and unless"
    " it had committed they are as they were"
)
"""What a Ctrl-C of ``choreo projections rebuild`` prints (exit 130): the half-filled shadow
tables are dropped by the next rebuild."""


@app.command("status")
def projections_status(as_json: JsonFlag = False) -> None:
    """How far the projector is: lag per partition, last event time, events/s, totals."""

    async def both(q: Queries) -> dict[str, Any]:
        return {**await q.projection_status(), "summary": await q.summary()}

    data = query(both)
    if as_json:
        print_json(data)
        return
    table = Table("topic", "partition", "end offset", "projected", "lag")
    for p in data["lag"]:
        table.add_row(
            p["topic"],
            str(p["partition"]),
            str(p["end_offset"]),
            str(p["projected"]),
            str(p["lag"]),
        )
    out.print(table)
    out.print(
        f"{data['events']} events logged, total lag {data['total_lag']}, last event at "
        f"{data['last_event_at']}, {data['events_per_second_1m']} events/s over the last minute"
    )
    summary = data["summary"]
    out.print(f"orders: {summary['orders']} {summary['by_status']}")
    if summary["by_cancel_reason"]:
        out.print(f"cancelled by reason: {summary['by_cancel_reason']}")


@app.command("rebuild")
def projections_rebuild(
    name: Annotated[
        str,
        typer.Argument(
            help="saga_status (every saga: the orders too), order_history, summary or all;"
            " one log feeds them, so each rebuilds them all."
        ),
    ] = "all",
    verify: Annotated[
        bool, typer.Option("--verify", help="Compare rebuilt and live rows; exit 1 if any differ.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rebuild's report as JSON.")
    ] = False,
) -> None:
    """Replay the log from the beginning into shadow tables and swap them in atomically.
    Queries keep answering from the live tables meanwhile.

    Ctrl-C stops it and its workers (exit 130); the read models stay whole."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.roles import as_process
    from projections.rebuild import rebuild

    if name not in READ_MODELS:
        raise typer.BadParameter("NAME is saga_status, order_history, summary or all")
    started = time.monotonic()
    with Progress(
        TextColumn("replaying the log"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeRemainingColumn(),
        console=console,
        transient=as_json,
    ) as bar:
        task = bar.add_task("replay", total=None, rate="-")

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

        try:
            # As the projector's role: the tables swapped in must stay the projector's.
            settings = as_process(get_settings(), "projector")
            report = asyncio.run(rebuild(settings, verify=verify, progress=progress))
        except ChoreoError as exc:
            fail_under(bar, exc)
        except KeyboardInterrupt:
            bar.live.transient = True
            console.print(INTERRUPTED)
            raise typer.Exit(130) from None
    _print_rebuilt(report, verify=verify, as_json=as_json)
    if verify and report.differences:
        raise typer.Exit(1)


def _print_rebuilt(report: RebuildReport, *, verify: bool, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    out.print(
        f"rebuilt {report.sagas} sagas from {report.events} events in "
        f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s); "
        f"{report.caught_up} caught up during the swap"
    )
    if verify:
        out.print(f"verify: {len(report.differences)} difference(s)")
        for line in report.differences:
            out.print(f"  {line}")
