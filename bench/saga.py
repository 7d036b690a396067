"""`choreo bench`: the whole platform, as real processes, under a stream of orders.

1. Start every process of :data:`choreo.registry.PROCESSES` with a fresh topic prefix
   (``bench<hex>.``: its own topics, consumer groups and schemas) via
   :class:`choreo.platform.Platform`. Inventory is seeded with ample stock, so that every
   order takes the path its scenario names instead of running out of mugs.
2. Place the orders (a mix of :mod:`choreo.scenarios`) at a target rate or flat out, many in
   flight, recording each order's publish time. An :class:`OrderTracker` on ``<prefix>order``
   approves large orders at once (as ``bench``) and records when each order's terminal event
   arrives: latency = arrival - publish, on the bench process's one clock.
3. Measure events produced (end offsets), what each process consumed (its group's committed
   offsets; the projector's PostgreSQL checkpoints), its CPU time and peak RSS; stop the
   platform (SIGTERM, graceful); then measure the baselines (:mod:`bench.baselines`) on the
   run's own records with the machine to themselves.

The bench's topics and schemas stay (like an e2e test's); only the raw baseline's scratch
topic and temp table are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import psutil

from bench.baselines import (
    codec_vs_fastavro,
    copy_rows,
    raw_kafka,
)
from bench.measure import (
    Watched,
    cpu_seconds,
    end_offsets,
    foreign_load,
    group_of,
    group_positions,
    jit_cpu_seconds,
    projector_position,
    sample_memory,
)
from bench.report import LatencySummary
from bench.result import ProcessFigures, SagaConfig, SagaResult
from bench.tracking import OrderRecord, OrderTracker
from choreo import registry
from choreo.client import ChoreoClient, new_order_id
from choreo.mix import EXPECTED, assign_scenarios, warm_up_scenarios
from choreo.platform import Platform, remove_deployment
from contracts.catalog import CATALOG
from contracts.samples import scenario_order
from events import tracing
from events.codec import Codec
from events.database import Database
from events.errors import ChoreoError
from events.settings import PROJECT_ROOT, Settings, get_settings
from events.topics import event_topics, provision_topics, read_to_end
from projections import PROJECTOR

AMPLE_STOCK = 1_000_000_000
SCARCE_SKUS = {"SKU-RARE-VASE"}
"""Kept at their seeded stock so that the ``out_of_stock`` scenario still runs out."""
CODEC_SAMPLE = 20_000
Log = Callable[[str], None]


def run(config: SagaConfig, log: Log, status: Log) -> SagaResult:
    """Bring the stack up (idempotent), then run the benchmark (see the module docstring)."""
    from choreo.stack import Stack

    started = time.perf_counter()
    infra = {s.name: s.pid for s in Stack().up(log) if s.pid is not None and s.running}
    stack_s = time.perf_counter() - started
    try:
        result = asyncio.run(_run(config, log, status, infra))
    finally:
        tracing.shutdown_telemetry()
    result.timings = {"stack_up": stack_s, **result.timings}
    result.timings["total"] = time.perf_counter() - started
    return result


async def _run(config: SagaConfig, log: Log, status: Log, infra: dict[str, int]) -> SagaResult:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = get_settings().model_copy(update={"topic_prefix": prefix})
    log_dir = settings.state_dir / "bench" / prefix.rstrip(".")
    result = SagaResult(config=config, prefix=prefix, log_dir=log_dir)
    timings = result.timings
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    await provision_topics(settings)
    env = {"CHOREO_INVENTORY_SEED_FILE": str(_ample_seed_file(log_dir))}
    if not config.metrics:
        env["CHOREO_METRICS_ENABLED"] = "false"
    if not config.tracing:
        env["CHOREO_TRACING_ENABLED"] = "false"
    else:
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = str(config.trace_sample)
        # The bench is where orders are placed, so it opens their traces, as the CLI does.
        os.environ.update(env)
        tracing.configure_telemetry("bench", settings)
    platform = Platform(settings, env, log_dir)
    result.env = {
        k: v
        for k, v in sorted(platform.env.items())
        if k.startswith(("CHOREO_", "OTEL_TRACES_"))
        and k not in {"CHOREO_API_PORT", "CHOREO_LOG_FORMAT"}
    }
    log(f"starting {len(registry.PROCESSES)} processes with prefix {prefix} (logs in {log_dir})")
    try:
        try:
            await platform.start(timeout=180.0)
        except AssertionError as exc:  # how Platform says a process did not become ready
            raise ChoreoError(f"the platform did not start: {exc}") from exc
        lap("platform_start")
        await _load(platform, settings, config, result, status, infra, lap)
        lap("run")
    finally:
        codes = await platform.stop()
        result.exit_codes = dict(codes)
        result.errors += platform.errors()[:20]
        lap("platform_stop")
    if config.baselines:
        log("platform stopped; measuring the baselines")
        await _baselines(settings, result, log, lap)
    if not config.keep_deployment:
        await remove_deployment(settings)  # its topics, schemas, roles: the figures are taken
    return result


def _ample_seed_file(log_dir: Path) -> Path:
    """The default stock with every plentiful SKU raised to :data:`AMPLE_STOCK`."""
    default = orjson.loads((PROJECT_ROOT / "services/inventory/seed_stock.json").read_bytes())
    stock = {sku: units if sku in SCARCE_SKUS else AMPLE_STOCK for sku, units in default.items()}
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "seed_stock.json"
    path.write_bytes(orjson.dumps(stock, option=orjson.OPT_INDENT_2))
    return path


# Long: the measured window in one place (snapshot, load, snapshot, results), so what is
# measured visibly brackets exactly the load and nothing else.
async def _load(
    platform: Platform,
    settings: Settings,
    config: SagaConfig,
    result: SagaResult,
    status: Log,
    infra_pids: dict[str, int],
    lap: Callable[[str], None],
) -> None:
    """Warm up, then place the orders, follow them to the end, and take the measurements.

    The warm-up places one order of each scenario of the mix and ``config.warm_up`` more of
    the mix, at the run's rate, and waits for them to end (not counted): consumer groups have
    joined and code paths are warm when the clock starts (the broker's JIT, given enough).
    ``infra_pids``: the stack's processes (Kafka, PostgreSQL, Jaeger), whose CPU time is
    reported too.
    """
    topics = event_topics(settings)
    groups = {n: g for n in registry.NAMES if (g := group_of(settings, n)) is not None}
    watched = [Watched(name, proc.pid) for name, proc in platform.procs.items()]
    infra = [Watched(n, pid, with_children=n == "postgres") for n, pid in infra_pids.items()]
    bench_self = Watched("bench (this process)", psutil.Process().pid)
    everything = [*watched, *infra, bench_self]
    scenarios = assign_scenarios(config.mix, config.orders)

    async with ChoreoClient(settings) as client, Database(settings, max_size=2) as db:
        tracker = OrderTracker(settings, client, client.codec)
        warm_up = warm_up_scenarios(config.mix, config.warm_up)
        tracker.reset(expected=len(warm_up))
        await tracker.start()
        status(f"warming up: {len(warm_up)} orders, not counted")
        await _place_all(client, tracker, warm_up, config)
        try:
            await asyncio.wait_for(tracker.all_done.wait(), config.timeout_s)
        except TimeoutError:
            result.errors.append(f"warm-up orders not all finished in {config.timeout_s:.0f} s")
        tracker.reset(expected=len(scenarios))
        lap("warm_up")
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(everything, stop_sampling))
        ticker: asyncio.Task[None] | None = None
        try:
            ends_before = await end_offsets(settings, topics)
            groups_before = await group_positions(settings, list(groups.values()))
            projector_before, rows_before = await projector_position(db, settings)
            for w in everything:
                w.cpu_before = cpu_seconds(w.pid, with_children=w.with_children)
                w.jit_before = jit_cpu_seconds(w.pid)

            own = [proc.pid for proc in platform.procs.values()]
            result.load["start"] = foreign_load(own)
            ticker = asyncio.create_task(_tick(tracker, status))
            first = time.perf_counter()
            await _place_all(client, tracker, scenarios, config)
            result.publish_s = time.perf_counter() - first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.all_done.wait(), config.timeout_s)
            waited_until = time.perf_counter()
            result.load["end"] = foreign_load(own)

            for w in everything:
                w.cpu_after = cpu_seconds(w.pid, with_children=w.with_children)
                w.jit_after = jit_cpu_seconds(w.pid)
                w.sample()
            ends_after = await end_offsets(settings, topics)
            groups_after = await group_positions(settings, list(groups.values()))
            projector_after, rows_after = await projector_position(db, settings)
        finally:
            if ticker is not None:
                ticker.cancel()
            stop_sampling.set()
            await sampler
            await tracker.stop()

    orders = tracker.orders
    finished = [o for o in orders.values() if o.finished is not None]
    last = max((o.finished for o in finished if o.finished is not None), default=waited_until)
    window = max(last - first, 1e-9)
    result.placed = len(orders)
    result.finished = len(finished)
    result.approvals = tracker.approvals
    result.needs_attention = tracker.needs_attention
    result.errors += tracker.errors[:20]
    result.window_s = window
    result.events = ends_after - ends_before
    result.projector_lag = ends_after - projector_after
    result.projector_rows = rows_after - rows_before
    result.outcomes = dict(Counter(o.outcome or "unfinished" for o in orders.values()))
    result.unexpected = dict(
        Counter(
            f"{o.scenario} → {o.outcome or 'unfinished'}" + (f" ({o.detail})" if o.detail else "")
            for o in orders.values()
            if o.outcome != EXPECTED.get(o.scenario)
        )
    )
    result.latency = LatencySummary.of([o.finished - o.published for o in finished if o.finished])
    result.points = [(o.published - first, o.finished - o.published)
                     for o in finished if o.finished is not None]  # fmt: skip
    result.completions = [o.finished - first for o in finished if o.finished is not None]
    result.placements = [o.published - first for o in orders.values()]

    consumed = {n: groups_after.get(g, 0) - groups_before.get(g, 0) for n, g in groups.items()}
    consumed["projector"] = projector_after - projector_before
    result.processes = [_figures(w, consumed.get(w.name), window) for w in watched]
    result.infrastructure = [_figures(w, None, window) for w in [*infra, bench_self]]
    result.notes.extend(warming_notes(result.infrastructure))


def warming_notes(figures: Sequence[ProcessFigures]) -> list[str]:
    """A note for each JVM that spent a tenth of its CPU in the run compiling: its figures,
    and the run's, include its warm-up."""
    return [
        f"{p.name}'s JIT compiler used {p.jit_cpu_s_run:.1f} of its {p.cpu_s_run:.1f} CPU"
        " seconds in the run: it was still warming up (run again, or with a longer --warm-up)"
        for p in figures
        if p.jit_cpu_s_run is not None and p.cpu_s_run and p.jit_cpu_s_run > 0.1 * p.cpu_s_run
    ]


def _figures(w: Watched, consumed: int | None, window: float) -> ProcessFigures:
    run_s = None
    if w.cpu_before is not None and w.cpu_after is not None:
        run_s = round(w.cpu_after - w.cpu_before, 2)
    jit_s = None
    if w.jit_before is not None and w.jit_after is not None:
        jit_s = round(w.jit_after - w.jit_before, 2)
    return ProcessFigures(
        name=w.name,
        pid=w.pid,
        consumed=consumed,
        consumed_per_s=round(consumed / window, 1) if consumed is not None else None,
        cpu_s_total=round(w.cpu_after, 2) if w.cpu_after is not None else None,
        cpu_s_run=run_s,
        jit_cpu_s_run=jit_s,
        peak_rss_mb=round(w.peak_kb / 1024, 1) if w.peak_kb else None,
    )


async def _place_all(
    client: ChoreoClient, tracker: OrderTracker, scenarios: Sequence[str], config: SagaConfig
) -> None:
    """Publish one order per scenario, at ``config.rate`` per second or flat out, with up to
    ``config.in_flight`` unacknowledged at once."""
    slots = asyncio.Semaphore(max(1, config.in_flight))
    tasks: list[asyncio.Task[None]] = []

    async def place(scenario: str) -> None:
        try:
            order_id = new_order_id()
            order = scenario_order(scenario)
            record = OrderRecord(scenario, time.perf_counter())
            tracker.orders[order_id] = record
            await client.place_order(order, order_id)
            record.acked = time.perf_counter()
        finally:
            slots.release()

    start = time.perf_counter()
    for i, scenario in enumerate(scenarios):
        if config.rate:
            delay = start + i / config.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(place(scenario)))
    await asyncio.gather(*tasks)


async def _tick(tracker: OrderTracker, status: Log) -> None:
    started = time.perf_counter()
    while True:
        status(
            f"placed {len(tracker.orders)}/{tracker.expected}, finished {tracker.finished}, "
            f"approved {tracker.approvals} ({time.perf_counter() - started:.0f}s)"
        )
        await asyncio.sleep(0.5)


async def _baselines(
    settings: Settings, result: SagaResult, log: Log, lap: Callable[[str], None]
) -> None:
    """The raw baselines on the run's own records; a failing one is reported, not raised."""
    values: list[bytes] = []
    sizes = keys = 0
    try:
        async for record in read_to_end(settings, event_topics(settings), timeout_s=300):
            values.append(record.value or b"")
            sizes += len(record.value or b"") + sum(len(k) + len(v) for k, v in record.headers)
            keys += len(record.key or b"")
    except Exception as exc:
        result.errors.append(f"reading the run's records failed: {exc}")
    lap("read_records")
    count = len(values)
    if not count:
        return
    messages = result.events or count  # the run's records, without the warm-up's
    try:
        log(f"baseline: raw aiokafka, {messages} messages of {sizes // count} bytes")
        result.raw_kafka = await raw_kafka(
            settings,
            messages=messages,
            message_bytes=sizes // count,
            key_bytes=max(1, keys // count),
        )
    except Exception as exc:
        result.errors.append(f"raw aiokafka baseline failed: {type(exc).__name__}: {exc}")
    lap("baseline_kafka")
    try:
        step = max(1, count // CODEC_SAMPLE)
        sample = values[::step]
        log(f"baseline: Codec vs fastavro on {len(sample)} of the run's events")
        result.codec = codec_vs_fastavro(_codec(settings), sample)
    except Exception as exc:
        result.errors.append(f"codec baseline failed: {type(exc).__name__}: {exc}")
    lap("baseline_codec")
    try:
        log(f"baseline: asyncpg COPY of the projector's {result.projector_rows} rows")
        result.copy = await copy_rows(settings, PROJECTOR.schema(settings))
    except Exception as exc:
        result.errors.append(f"COPY baseline failed: {type(exc).__name__}: {exc}")
    lap("baseline_copy")


def _codec(settings: Settings) -> Codec:
    from events.schemas import SchemaRegistry

    return Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG)
