"""`choreo chaos`: orders and faults against the running platform, then its invariants.

See :mod:`choreo.chaos` for what a run does; this module is its command line: the options
(each with an environment default), a progress display while it runs, the report's tables or
JSON at the end, and exit code 1 on any violation.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from choreo.chaos.plan import DEFAULT_FAULTS, FAULT_KINDS, ChaosConfig, parse_faults
from choreo.cli.common import JsonFlag, console, fail, fail_under, out, print_json
from choreo.mix import parse_mix
from events.errors import ChoreoError
from events.logs import configure_logging
from events.settings import get_settings

DEFAULT_CHAOS_MIX = "happy=65,large=5,declined=10,flaky=10,unshippable=10"
FAULTS_HELP = "; ".join(f"{name}: {what}" for name, what in FAULT_KINDS.items())


class ProgressDisplay:
    """The run's progress as bars (orders placed and ended, returns ended of those asked
    for) and a line per phase and fault."""

    def __init__(self, progress: Progress, orders: int, returns: bool) -> None:
        self.progress = progress
        self.placed_task = progress.add_task("placed", total=orders)
        self.ended_task = progress.add_task("ended", total=orders)
        self.returns_task = progress.add_task("returns", total=0, visible=returns)

    def phase(self, text: str) -> None:
        self.progress.console.print(f"[bold]{text}[/]")

    def placed(self, count: int) -> None:
        self.progress.update(self.placed_task, completed=count)

    def ended(self, count: int) -> None:
        self.progress.update(self.ended_task, completed=count)

    def returns(self, ended: int, asked: int) -> None:
        self.progress.update(self.returns_task, completed=ended, total=asked)

    def note(self, text: str) -> None:
        self.progress.console.print(f"  {text}")


# Long: one typer command with every option of the run, each declared with its help.
def chaos(
    orders: Annotated[
        int, typer.Option(min=1, envvar="CHOREO_CHAOS_ORDERS", help="Orders to place.")
    ] = 1000,
    rate: Annotated[
        float,
        typer.Option(min=0.1, envvar="CHOREO_CHAOS_RATE", help="Orders placed per second."),
    ] = 20.0,
    mix: Annotated[
        str,
        typer.Option(
            envvar="CHOREO_CHAOS_MIX",
            help="Scenario weights (the samples of `choreo orders place --sample`); large"
            " orders are approved by the run as soon as they ask.",
        ),
    ] = DEFAULT_CHAOS_MIX,
    faults: Annotated[
        str,
        typer.Option(
            envvar="CHOREO_CHAOS_FAULTS",
            help=f"Comma-separated fault kinds, `all` or `none`. {FAULTS_HELP}. broker and"
            " postgres restart the local stack of CHOREO_STATE_DIR (never an external one).",
        ),
    ] = DEFAULT_FAULTS,
    seed: Annotated[
        int | None,
        typer.Option(
            envvar="CHOREO_CHAOS_SEED",
            help="Random fault order and times (and which process is stopped), reproducible;"
            " without it a fixed schedule, evenly spaced. Also shuffles the orders.",
        ),
    ] = None,
    stop_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            envvar="CHOREO_CHAOS_STOP_S",
            help="How long `stop` freezes its process (default: the consumer session"
            " timeout plus 2 s).",
        ),
    ] = None,
    broker_down: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="CHOREO_CHAOS_BROKER_DOWN_S",
            help="Seconds a killed Kafka node stays down.",
        ),
    ] = 5.0,
    resend: Annotated[
        int,
        typer.Option(
            min=0,
            envvar="CHOREO_CHAOS_RESEND",
            help="Logged records `resend` publishes again byte for byte; as many orders (at"
            " most a tenth) are placed again as client retries with new event ids.",
        ),
    ] = 20,
    quiet_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            envvar="CHOREO_CHAOS_QUIET_TIMEOUT_S",
            help="Seconds to wait, once every order is placed, for every order to end, every"
            " outbox to empty and the projector to reach the log's end.",
        ),
    ] = 300.0,
    returns: Annotated[
        int,
        typer.Option(
            min=0,
            max=100,
            envvar="CHOREO_CHAOS_RETURNS",
            help="Percent of the orders whose customer sends items back once the order is"
            " delivered (or declined), each path of the returns saga in turn; 0: no returns.",
        ),
    ] = 30,
    verify_projections: Annotated[
        bool,
        typer.Option(
            "--verify-projections/--no-verify-projections",
            help="Rebuild the read models from the log and compare with the live ones"
            " (`choreo projections rebuild --verify`).",
        ),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Place orders (and returns of some) against the running platform (`choreo run`) while
    injecting faults, wait for quiescence, and check the invariants from the services' own
    tables: every saga terminal; at most one charge and exactly one refund per charged
    cancelled order; no reservation held; no live shipment on a cancelled order; one
    confirmation per completed order; stock conserved (restocks included); a completed
    return refunded, restocked and confirmed once, a cancelled one neither refunded nor
    restocked, its pickup cancelled; every malformed value in the DLQ with a reason;
    projections equal to a rebuild; no saga cancelled by a deadline whose participant would
    have answered. Exits 1 on any violation (or a fault that could not be injected)."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.chaos.report import tables
    from choreo.chaos.run import run_chaos

    settings = get_settings()
    try:
        config = ChaosConfig(
            orders=orders,
            rate=rate,
            mix=parse_mix(mix),
            faults=parse_faults(faults),
            seed=seed,
            stop_s=(
                stop_seconds
                if stop_seconds is not None
                else settings.consumer_session_timeout_ms / 1000 + 2
            ),
            broker_down_s=broker_down,
            resend=resend,
            quiet_timeout_s=quiet_timeout,
            verify_projections=verify_projections,
            returns=returns,
        )
    except ValueError as exc:
        fail(ChoreoError(str(exc)))
    except ChoreoError as exc:
        fail(exc)
    columns = (TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=as_json) as bar:
        # Inside the bar, whose stderr it writes through. The run's own clients lose their
        # broker and database to the faults it injects: each repeated reconnect error once
        # per window, as the platform's processes log them (a run with every fault wrote
        # about a thousand such lines). As text: read on a terminal, not collected.
        configure_logging("chaos", settings.model_copy(update={"log_format": "text"}))
        display = ProgressDisplay(bar, orders, returns > 0)
        try:
            report = asyncio.run(run_chaos(settings, config, display))
        except ChoreoError as exc:
            fail_under(bar, exc)
    if as_json:
        print_json(report.to_json())
    else:
        for table in tables(report):
            out.print(table)
        out.print(
            f"{report.placed} orders and {report.returned} returns in {report.seconds:.0f}s;"
            f" {report.unexpected} ended"
            f" otherwise than their scenario; {report.cancelled_by_deadline} cancelled by a"
            f" deadline; quiet: {'yes' if report.quiet else 'no'}"
        )
        out.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in report.phases.items()))
    if not report.held:
        raise typer.Exit(1)
