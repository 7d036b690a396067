"""`choreo bench`: the benchmarks' commands, mounted by :mod:`choreo.cli` when the
``choreo[bench]`` extra (matplotlib, psutil) is installed.

`choreo bench [OPTIONS]` (same as `choreo bench saga`) runs the order saga end to end;
`choreo bench rebuild` measures the projection rebuild against a raw read of the log;
`choreo bench peers` runs the same order saga on Choreo, DBOS Transact and Temporal;
`choreo bench console` times the console's pages over 100,000 sagas in the read models.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from bench.peers.cli import peers as bench_peers
from bench.report import RESULTS_DIR, fmt, ratio_table, timestamp, write_plot
from choreo.cli.common import (
    JsonFlag,
    command_group,
    console,
    fail,
    out,
    print_json,
    readable,
)
from events.errors import ChoreoError

if TYPE_CHECKING:
    from bench.rebuild import RebuildBenchResult
    from bench.result import SagaConfig, SagaResult

app = command_group(
    "Benchmarks on the real stack; they report figures and never fail on them. "
    "`choreo bench [OPTIONS]` runs the saga benchmark."
)

app.command("peers")(bench_peers)

OrdersOpt = Annotated[int, typer.Option("--orders", min=1, help="Orders to place.")]
RateOpt = Annotated[
    float | None,
    typer.Option("--rate", min=0.1, help="Orders per second (default: as fast as possible)."),
]
MixOpt = Annotated[
    str, typer.Option("--mix", help="Scenario weights, e.g. happy=70,large=10,declined=20.")
]
TracingOpt = Annotated[
    bool,
    typer.Option(
        "--tracing/--no-tracing",
        help="Export traces from the processes (--no-tracing: CHOREO_TRACING_ENABLED=false).",
    ),
]
MetricsOpt = Annotated[
    bool,
    typer.Option(
        "--metrics/--no-metrics",
        help="Export metrics from the processes, traced or not (--no-metrics:"
        " CHOREO_METRICS_ENABLED=false; with --no-tracing, no telemetry at all).",
    ),
]
TraceSampleOpt = Annotated[
    float,
    typer.Option(
        "--trace-sample",
        min=0.0,
        max=1.0,
        help="Share of orders traced, e.g. 0.1 (OTEL_TRACES_SAMPLER=parentbased_traceidratio).",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for every order to end.")
]
InFlightOpt = Annotated[
    int, typer.Option("--in-flight", min=1, help="Orders published but not yet acknowledged.")
]
WarmUpOpt = Annotated[
    int,
    typer.Option(
        "--warm-up",
        min=0,
        help="Orders placed at the run's rate before the clock starts, not counted: a freshly"
        " started broker's JIT compiles over its first minutes of traffic (the bench notes"
        " when it did during the run).",
    ),
]
PlotOpt = Annotated[
    Path | None,
    typer.Option("--plot", help="PNG to write (default: `bench/results/bench-<timestamp>.png`)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Folder for `bench-<timestamp>.json` (default: bench/results)."),
]


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    orders: OrdersOpt = 1000,
    rate: RateOpt = None,
    mix: MixOpt = "happy=70,large=10,declined=10,unshippable=10",
    tracing: TracingOpt = True,
    metrics: MetricsOpt = True,
    trace_sample: TraceSampleOpt = 1.0,
    timeout: TimeoutOpt = 900.0,
    in_flight: InFlightOpt = 1000,
    warm_up: WarmUpOpt = 0,
    as_json: JsonFlag = False,
    plot: PlotOpt = None,
    out_dir: OutOpt = None,
) -> None:
    """The order saga end to end (same as `choreo bench saga`): start every process on a fresh
    topic prefix, place orders, auto-approve the large ones, follow each to its end; report
    throughput, latency, per-process cost and baselines measured in the same run."""
    if ctx.invoked_subcommand is None:
        bench_saga(**ctx.params)  # the same options, by name


@app.command("saga")
def bench_saga(
    orders: OrdersOpt = 1000,
    rate: RateOpt = None,
    mix: MixOpt = "happy=70,large=10,declined=10,unshippable=10",
    tracing: TracingOpt = True,
    metrics: MetricsOpt = True,
    trace_sample: TraceSampleOpt = 1.0,
    timeout: TimeoutOpt = 900.0,
    in_flight: InFlightOpt = 1000,
    warm_up: WarmUpOpt = 0,
    as_json: JsonFlag = False,
    plot: PlotOpt = None,
    out_dir: OutOpt = None,
) -> None:
    """The order saga end to end (the default of `choreo bench`).

    Every process on a fresh topic prefix, N orders of the mix (inventory seeded with ample
    stock), large ones approved at once by the bench; throughput, latency, per-process cost
    and baselines measured in the same run. The processes inherit the environment, so e.g.
    CHOREO_SAGA_INVENTORY_DEADLINE_S=600 changes a deadline for the run."""
    _bench_saga(**locals())  # its options by name (nothing else is local yet)


def _bench_saga(
    orders: int,
    rate: float | None,
    mix: str,
    tracing: bool,
    metrics: bool,
    trace_sample: float,
    timeout: float,
    in_flight: int,
    warm_up: int,
    as_json: bool,
    plot: Path | None,
    out_dir: Path | None,
) -> None:
    # psutil, asyncpg, the platform: imported here to keep `choreo --help` quick.
    from bench import saga
    from bench.result import SagaConfig
    from choreo.mix import parse_mix

    try:
        weights = parse_mix(mix)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mix") from None
    config = SagaConfig(
        orders=orders,
        rate=rate,
        mix=weights,
        tracing=tracing,
        metrics=metrics,
        timeout_s=timeout,
        in_flight=in_flight,
        warm_up=warm_up,
        trace_sample=trace_sample,
    )
    with console.status("starting") as spinner:
        try:
            result = saga.run(
                config,
                log=lambda line: console.print(f"[cyan]bench[/] {line}"),
                status=lambda line: spinner.update(line),
            )
        except ChoreoError as exc:
            fail(exc)
    _report_saga(result, as_json, plot, out_dir)


def _report_saga(
    result: SagaResult, as_json: bool, plot: Path | None, out_dir: Path | None
) -> None:
    """Write the run's plot and JSON; print the JSON or the tables, and where the files are."""
    stamp = timestamp()
    plot_path = plot or RESULTS_DIR / f"bench-{stamp}.png"
    json_path = (out_dir or RESULTS_DIR) / f"bench-{stamp}.json"
    write_plot(
        plot_path,
        result.points,
        result.completions,
        placements=result.placements,
        title=f"choreo bench: {result.placed} orders",
    )
    document = {**result.to_json(), "files": {"plot": str(plot_path), "json": str(json_path)}}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    if as_json:
        print_json(document)
    else:
        _print_saga_result(result)
    console.print(f"plot: {plot_path}")
    console.print(f"json: {json_path}")


def _tracing_label(cfg: SagaConfig) -> str:
    if not cfg.tracing:
        return "off"
    return "on" if cfg.trace_sample >= 1 else f"on, {cfg.trace_sample:.0%} of orders sampled"


def _summary_table(result: SagaResult) -> Table:
    cfg = result.config
    mix = ",".join(f"{k}={v}" for k, v in cfg.mix.items())
    summary = Table(
        "figure",
        "value",
        title=f"choreo bench: {cfg.orders} orders ({mix}), rate {cfg.rate or 'max'}/s, "
        f"tracing {_tracing_label(cfg)}, metrics {'on' if cfg.metrics else 'off'}",
    )
    lat = result.latency
    unexpected = ", ".join(f"{k}: {v}" for k, v in result.unexpected.items()) or "none"
    latency = f"{fmt(lat.p50_ms)} / {fmt(lat.p95_ms)} / {fmt(lat.p99_ms)} / {fmt(lat.max_ms)} ms"
    for label, value in (
        ("orders finished / placed", f"{result.finished} / {result.placed}"),
        ("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(result.outcomes.items()))),
        ("unexpected outcomes", unexpected),
        ("approved by the bench", str(result.approvals)),
        ("order.needs_attention seen", str(result.needs_attention)),
        ("publishing took", f"{result.publish_s:.2f} s"),
        ("first publish → last terminal", f"{result.window_s:.2f} s"),
        ("orders/s (finished / window)", fmt(result.orders_per_second)),
        ("events produced", f"{result.events:,}"),
        ("events/s", fmt(result.events_per_second)),
        ("latency p50 / p95 / p99 / max", latency),
        (
            "projector rows logged (lag at end)",
            f"{result.projector_rows:,} ({result.projector_lag:,})",
        ),
    ):
        summary.add_row(label, value)
    return summary


def _process_table(result: SagaResult) -> Table:
    # Headers of short words, which wrap instead of being cut at 80 columns.
    procs = Table(
        "process",
        "events in",
        "events in/s",
        "CPU s run",
        "CPU % run",
        "CPU s all",
        "peak RSS MB",
        title="per process (run: the run window; CPU %: of one core)",
    )
    for group, rows in (("", result.processes), ("[dim]", result.infrastructure)):
        for p in rows:
            share = p.cpu_s_run / result.window_s * 100 if p.cpu_s_run is not None else None
            procs.add_row(
                f"{group}{p.name}",
                fmt(p.consumed),
                fmt(p.consumed_per_s),
                fmt(p.cpu_s_run),
                fmt(share),
                fmt(p.cpu_s_total),
                fmt(p.peak_rss_mb),
            )
    return readable(procs, "process")  # whole names at 80 columns ("saga-co…" before)


def _print_saga_result(result: SagaResult) -> None:
    out.print(_summary_table(result))
    if result.env:
        out.print("settings: " + " ".join(f"{k}={v}" for k, v in result.env.items()))
    out.print("machine: " + "; ".join(f"{k}: {v}" for k, v in result.load.items()))
    out.print(_process_table(result))
    out.print(ratio_table(result.ratios()))
    if result.raw_kafka is not None:
        k = result.raw_kafka
        out.print(
            f"raw aiokafka: {k.messages:,} messages of {k.message_bytes} bytes "
            f"(value + headers) in {k.seconds:.2f} s"
        )
    for line in [*result.errors, *result.notes]:
        out.print(f"[yellow]note:[/] {line}")
    unclean = {n: c for n, c in result.exit_codes.items() if c != 0}
    if unclean:
        out.print(f"[yellow]processes that did not exit cleanly:[/] {unclean}")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    out.print(f"took: {timings}")
    out.print(f"logs: {result.log_dir}")


@app.command("rebuild")
def bench_rebuild(
    events: Annotated[
        int, typer.Option("--events", min=1, help="Events to write as synthetic order flows.")
    ] = 100_000,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds", min=1, help="Measure both this many times, alternating; keep the best."
        ),
    ] = 3,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Rebuild lanes (processes); 0: CHOREO_REBUILD_WORKERS (default: partition"
            " numbers shared evenly over the CPUs).",
        ),
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Projection rebuild from the log vs a raw read + decode.

    Writes K events as synthetic order flows to a fresh prefix's topics, then measures
    `read_to_end` + `Codec.decode` and `projections.rebuild` (events/s each, and the ratio),
    best of --rounds, with the machine's busy CPU per event over each (every process: the
    lanes, PostgreSQL, the broker). The bench's projector schema and topics are deleted at
    the end."""
    # asyncpg, the projector: imported here to keep `choreo --help` quick.
    from bench import rebuild

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=max(total, done))

        try:
            result = rebuild.run(
                events,
                log=lambda line: console.print(f"[cyan]bench[/] {line}"),
                progress=progress,
                rounds=rounds,
                workers=workers,
            )
        except ChoreoError as exc:
            fail(exc)
    if as_json:
        print_json(result.to_json())
        return
    _print_rebuild_result(result)


def _print_rebuild_result(result: RebuildBenchResult) -> None:
    table = Table(
        "step",
        "events",
        "seconds",
        "events/s",
        title=f"choreo bench rebuild: {result.events:,} events, best of {result.rounds}",
    )
    rb = result.rebuild
    for label, n, seconds in (
        ("produce (EventProducer, batched)", result.events, result.produce_s),
        ("raw: read_to_end + Codec.decode", result.raw_events, result.raw_s),
        ("projections.rebuild", rb.events, rb.seconds),
    ):
        table.add_row(label, f"{n:,}", f"{seconds:.2f}", fmt(n / seconds if seconds else None))
    out.print(table)
    out.print(ratio_table(result.ratios()))
    out.print(
        "rounds (s): raw "
        + ", ".join(f"{t:.2f}" for t in result.raw_rounds_s)
        + "; rebuild "
        + ", ".join(f"{t:.2f}" for t in result.rebuild_rounds_s)
        + f"; rebuild lanes: {result.workers or 'partition numbers shared over the CPUs'}"
    )
    raw_us, rebuild_us = result.cpu_us_per_event
    out.print(
        f"machine CPU per event (every process, best round): raw {raw_us:.1f} µs, rebuild"
        f" {rebuild_us:.1f} µs ({raw_us / rebuild_us if rebuild_us else 0:.2f}x)"
    )
    out.print(
        f"rebuilt {rb.sagas:,} sagas ({rb.skipped} undecodable skipped); took "
        f"{result.total_s:.1f}s in all, cleanup {result.cleanup_s:.1f}s "
        f"(schema and topics of {result.prefix} deleted)"
    )


@app.command("console")
def bench_console(
    sagas: Annotated[
        int, typer.Option("--sagas", min=1, help="Sagas to load into the read models.")
    ] = 100_000,
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, help="Warm requests per page (the median is kept).")
    ] = 5,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the bench's read models (to EXPLAIN queries).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Time to render the console's pages over N sagas in the read models.

    Loads N sagas (events and saga_status rows, folded by the read model's own
    function) with COPY into a fresh prefix's projector schema, builds the API in this
    process and times GETs of the orders list (first page, a deep page, filters, search), one
    saga's page, the approvals page, the overview and /summary: the first request of each and
    the median of --repeat more. The bench's schemas and topics are deleted at the end
    (unless --keep)."""
    # asyncpg, the API: imported here to keep `choreo --help` quick.
    from bench import console as console_bench

    try:
        result = console_bench.run(
            sagas, repeat, log=lambda line: console.print(f"[cyan]bench[/] {line}"), keep=keep
        )
    except ChoreoError as exc:
        fail(exc)
    document = result.to_json()
    path = RESULTS_DIR / f"console-{timestamp()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    if as_json:
        print_json(document)
        return
    table = Table(
        "page",
        "cold ms",
        "warm ms (median)",
        "KiB",
        title=f"choreo bench console: {result.sagas:,} sagas ({result.events:,} events)",
    )
    for t in result.timings:
        table.add_row(t.name, f"{t.cold_ms:,.0f}", f"{t.median_ms:,.0f}", f"{t.size / 1024:,.0f}")
    out.print(table)
    out.print(
        f"loaded in {result.load_s:.1f}s, indexed in {result.index_s:.1f}s; load average "
        f"{result.machine['load_average']}; written to {path}"
    )
