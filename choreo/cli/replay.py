"""`choreo replay`: rebuild a process's own tables from the log, with no new side effects."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from choreo.cli.common import console, fail_under, out, print_json
from events.errors import ChoreoError
from events.settings import get_settings


def replay_cmd(
    name: Annotated[
        str, typer.Argument(help="inventory, payment, shipping, crm, email or coordinator")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the replay's report as JSON.")
    ] = False,
) -> None:
    """Rebuild a process's own tables from the log, with no new side effects: no charge, mail
    or booking, nothing published. Its schema is DROPPED and rebuilt. The process must be
    stopped (refused while its consumer group has members; a killed process leaves it after
    the session timeout) and run with the same CHOREO_* configuration. Exits 1 if some
    message could not be replayed as it went live."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.replay import replay
    from choreo.roles import provision_roles

    started = time.monotonic()
    with Progress(
        TextColumn(f"replaying {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        console=console,
        transient=as_json,
    ) as bar:
        task = bar.add_task("replay", total=None, rate="-")

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

        try:
            settings = get_settings()
            report = asyncio.run(replay(settings, name, progress=progress))
            if settings.database_roles:  # the schema was made anew by the administrator
                asyncio.run(provision_roles(settings))
        except ChoreoError as exc:
            fail_under(bar, exc)
    if as_json:
        print_json(report.to_json())
    else:
        out.print(
            f"replayed {report.replayed} of {report.inputs} messages into {report.process} in "
            f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s); skipped: "
            f"{report.skipped} without handler, {report.undecodable} undecodable, "
            f"{report.duplicates} duplicates, {report.dead_lettered} dead-lettered "
            f"({report.give_up_hooks} give-up hooks replayed); timers fired: "
            f"{report.timers_fired}"
        )
        for line in report.divergent:
            out.print(f"  [red]divergent:[/] {line}")
        for line in report.unexplained:
            out.print(f"  [red]not reproduced:[/] {line}")
    if not report.exact:
        raise typer.Exit(1)
