"""`choreo bench peers`: the command, mounted on `choreo bench` by :mod:`bench.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from bench.peers import WARM_UP
from bench.peers.report import (
    SystemFigures,
    document,
    figures_table,
    parse_rates,
    parse_systems,
    ratio_table,
)
from bench.report import RESULTS_DIR, timestamp
from choreo.cli.common import JsonFlag, console, fail, out, print_json
from events.errors import ChoreoError

if TYPE_CHECKING:
    from bench.peers.runner import PeersConfig

OrdersOpt = Annotated[int, typer.Option("--orders", min=1, help="Orders per system.")]
RatesOpt = Annotated[
    list[float] | None,
    typer.Option(
        "--rate",
        help="Orders per second; 0 is a burst (all at once). Repeat it to run several arrival "
        "patterns, e.g. --rate 0 --rate 20. Default: a burst.",
    ),
]
OnlyOpt = Annotated[
    str, typer.Option("--only", help="Systems to run, in order: choreo,dbos,temporal.")
]
MixOpt = Annotated[str, typer.Option("--mix", help="Scenario weights, as for `choreo bench`.")]
TracingOpt = Annotated[
    bool,
    typer.Option(
        "--tracing/--no-tracing",
        help="Trace Choreo's orders and export its metrics (untraced: neither, as the peers"
        " are run: no exporter configured).",
    ),
]
InFlightOpt = Annotated[
    int, typer.Option("--in-flight", min=1, help="Order starts unanswered at once.")
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for a system's orders to end.")
]
WarmUpOpt = Annotated[
    int,
    typer.Option(
        "--warm-up",
        min=0,
        help="Orders each system runs at the run's rate before its clock starts, not counted"
        " (JITs, caches and pools reach their steady state; a Kafka broker started minutes"
        " ago is still compiling its hot paths).",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Folder for `peers-<timestamp>.json` (default: bench/results)."),
]


def peers(
    orders: OrdersOpt = 1000,
    rate: RatesOpt = None,
    only: OnlyOpt = "choreo,dbos,temporal",
    mix: MixOpt = "happy=70,large=10,declined=10,unshippable=10",
    tracing: TracingOpt = False,
    in_flight: InFlightOpt = 1000,
    timeout: TimeoutOpt = 900.0,
    warm_up: WarmUpOpt = WARM_UP,
    as_json: JsonFlag = False,
    out_dir: OutOpt = None,
) -> None:
    """The order saga on Choreo, DBOS Transact and Temporal, one after the other.

    Same orders (the mix), same count and arrival pattern for each; reports orders/s, latency
    p50/p95/p99, CPU per order (the system's processes, its server, PostgreSQL) and peak RSS,
    checks each system's invariants, and gives Choreo's figures as ratios to each peer. The
    peers' servers come from `make bench-peers`; see bench/peers/README.md."""
    # The platform, DBOS and Temporal SDKs: imported here to keep `choreo --help` quick.
    from bench.peers import runner
    from choreo.mix import parse_mix

    try:
        config = runner.PeersConfig(
            orders=orders,
            rates=parse_rates(rate),
            mix=parse_mix(mix),
            systems=parse_systems(only),
            in_flight=in_flight,
            timeout_s=timeout,
            warm_up=warm_up,
            tracing=tracing,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with console.status("starting") as spinner:
        try:
            runs = runner.run(
                config,
                log=lambda line: console.print(f"[cyan]bench peers[/] {line}"),
                status=lambda line: spinner.update(line),
            )
        except ChoreoError as exc:
            fail(exc)
    doc, path = _write(runs, config, out_dir)
    if as_json:
        print_json(doc)
        return
    _print(runs, orders)
    console.print(f"json: {path}")


def _write(
    runs: list[SystemFigures], config: PeersConfig, out_dir: Path | None
) -> tuple[dict[str, Any], Path]:
    """The run's JSON document, and where it was written."""
    settings = {
        "orders": config.orders,
        "rates": [r or "burst" for r in config.rates],
        "mix": config.mix,
        "systems": list(config.systems),
        "in_flight": config.in_flight,
        "warm_up": config.warm_up,
        "choreo_tracing": config.tracing,
    }
    doc = document(runs, settings)
    path = (out_dir or RESULTS_DIR) / f"peers-{timestamp()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))
    return doc, path


def _print(runs: list[SystemFigures], orders: int) -> None:
    from bench.peers.runner import machine_load

    for rate in dict.fromkeys(r.rate for r in runs):
        at_rate = [r for r in runs if r.rate == rate]
        out.print(figures_table(at_rate, orders))
        choreo = next((r for r in at_rate if r.system == "choreo"), None)
        others = [r for r in at_rate if r.system != "choreo"]
        if choreo is not None and others:
            out.print(ratio_table(choreo, others))
    for r in runs:
        for note in [*r.errors, *r.notes]:
            out.print(f"[yellow]note ({r.system}, rate {r.rate or 'burst'}):[/] {note}")
        for what, count in r.unexpected.items():
            out.print(f"[yellow]unexpected ({r.system}):[/] {what}: {count}")
        bad = {k: v for k, v in r.invariants.items() if k not in ("ok", "refunds", "charges") and v}
        if bad:
            out.print(f"[red]invariants violated ({r.system}):[/] {bad}")
    out.print(
        "CPU per order: the system's processes + its server (Kafka / Temporal) + PostgreSQL "
        "(all of it, shared with whatever else runs) over the run window; peak RSS: the "
        "system's own processes. Machine: " + machine_load() + " (figures are noisy when the "
        "machine is shared)."
    )
