"""`choreo breakers`: the providers' circuit breakers as the processes publish them, and
`choreo faults`: making a provider fail for a while (a test, a demo, a game day)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Column, Table

from choreo.cli.common import JsonFlag, command_group, fail, out, print_json, readable, stacked
from events.errors import ChoreoError
from events.settings import get_settings

if TYPE_CHECKING:
    from events.database import Database

T = TypeVar("T")

faults_app = command_group("Make a provider fail for a while, or stop it failing.")

STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def _with_db(call: Callable[[Database], Awaitable[T]]) -> T:
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from events.database import Database

    async def run() -> T:
        async with Database(get_settings(), max_size=2) as db:
            return await call(db)

    try:
        return asyncio.run(run())
    except ChoreoError as exc:
        fail(exc)


def breakers_cmd(
    include_stale: Annotated[
        bool, typer.Option("--all", help="Include rows of processes that stopped publishing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The circuit breaker of every provider in every running process: state, since when,
    failures in a row, times opened, messages deferred, bulkhead use, injected faults."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from events.breaker_board import read_breakers

    rows = [
        row
        for row in _with_db(lambda db: read_breakers(db, get_settings()))
        if include_stale or not row.stale
    ]
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    # Six columns that read at 80: the provider under its process, since when under the
    # state, the counts in one cell; the last error wraps.
    table = Table(
        "process", "state", Column("failing · opened · deferred", overflow="fold"), "bulkhead",
        "fault", Column("last error", overflow="fold"),
    )  # fmt: skip
    for row in rows:
        style = STATE_STYLE.get(row.state, "")
        state = f"[{style}]{row.state}[/]" + (" (stale)" if row.stale else "")
        table.add_row(
            stacked(row.process, row.provider), stacked(state, f"{row.since:%H:%M:%S}"),
            f"{row.failures} · {row.opened} · {row.deferred}", f"{row.in_use}/{row.concurrency}",
            f"{row.fault_rate:g}" if row.fault_rate else "-", (row.last_error or "")[:120],
        )  # fmt: skip
    if not rows:
        out.print("no circuit breakers published: is the platform running (`choreo run`)?")
        return
    out.print(readable(table, "process", "state"))


PROVIDERS = "gateway, carrier, mailer or crm"
"""The simulated providers, as the services' handlers name them (``router.on(provider=)``)."""


@faults_app.command("inject")
def faults_inject(
    provider: Annotated[str, typer.Argument(help=f"{PROVIDERS}.")],
    failure_rate: Annotated[
        float, typer.Option("--failure-rate", min=0, max=1, help="Share of calls that fail.")
    ] = 1.0,
    seconds: Annotated[
        float, typer.Option("--for", min=0.1, help="How long, in seconds, from now.")
    ] = 30.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the fault and the processes it reaches as JSON.")
    ] = False,
) -> None:
    """Make calls to PROVIDER fail at a rate for a while, in every running process that calls
    it (they pick it up within `CHOREO_BREAKER_PUBLISH_INTERVAL_MS`). The failures come before
    the provider is called, as if it were down: its breaker opens and messages wait."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from events.breaker_board import inject_fault

    async def inject(db: Database) -> list[str]:
        try:
            return await inject_fault(db, get_settings(), provider, failure_rate, seconds)
        except LookupError as exc:
            raise ChoreoError(str(exc)) from None

    processes = _with_db(inject)
    if as_json:
        print_json(
            {"provider": provider, "failure_rate": failure_rate, "seconds": seconds,
             "processes": processes}
        )  # fmt: skip
        return
    out.print(
        f"provider {provider}: calls fail at rate {failure_rate:g} for {seconds:g}s"
        f" in {', '.join(processes)}"
    )


@faults_app.command("clear")
def faults_clear(
    provider: Annotated[
        str | None,
        typer.Argument(help=f"{PROVIDERS}; every provider when left out."),
    ] = None,
) -> None:
    """End injected faults now."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from events.breaker_board import clear_faults, read_breakers

    async def clear(db: Database) -> int:
        cleared = await clear_faults(db, get_settings(), provider)
        if provider is not None and not cleared:  # a typo must not pass for "nothing to clear"
            known = sorted({row.provider for row in await read_breakers(db, get_settings())})
            if provider not in known:
                calling = ", ".join(known) or "none (is the platform running?)"
                raise ChoreoError(
                    f"no provider named {provider!r}: the running processes call {calling}"
                )
        return cleared

    cleared = _with_db(clear)
    out.print(f"cleared {cleared} injected fault(s)")
