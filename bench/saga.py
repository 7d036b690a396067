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
import math
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient

from bench.baselines import (
    CodecResult,
    CopyResult,
    RawKafkaResult,
    codec_vs_fastavro,
    copy_rows,
    raw_kafka,
)
from bench.report import LatencySummary, Ratio, machine_info
from choreo import registry
from choreo.client import ChoreoClient, new_order_id
from choreo.platform import Platform
from contracts.catalog import CATALOG, OrderCancelled
from contracts.samples import SCENARIOS, scenario_order
from events import tracing
from events.codec import Codec
from events.database import Database
from events.errors import ChoreoError
from events.headers import EVENT_TYPE, header
from events.settings import PROJECT_ROOT, Settings, get_settings
from events.topics import event_topics, partitions_of, provision_topics, read_to_end, topic_for
from projections import PROJECTOR

DEFAULT_MIX = "happy=70,large=10,declined=10,unshippable=10"
EXPECTED: dict[str, str] = {
    "happy": "completed",
    "large": "completed",
    "out_of_stock": "cancelled:out_of_stock",
    "declined": "cancelled:payment_declined",
    "flaky": "completed",
    "timeout": "cancelled:payment_timeout",
    "unshippable": "cancelled:shipment_failed",
    "bounce": "completed",
}
"""How each scenario's order ends when the platform keeps up (``completed`` or
``cancelled:<reason>``); anything else is reported as unexpected (e.g. a step deadline)."""
TERMINAL = ("order.completed", "order.cancelled")
APPROVER = "bench"
AMPLE_STOCK = 1_000_000_000
SCARCE_SKUS = {"SKU-RARE-VASE"}
"""Kept at their seeded stock so that the ``out_of_stock`` scenario still runs out."""
CODEC_SAMPLE = 20_000
WARM_UP_TIMEOUT_S = 120.0
Log = Callable[[str], None]


# --------------------------------------------------------------------------- the order mix


def parse_mix(text: str) -> dict[str, int]:
    """``happy=70,large=10`` → ``{"happy": 70, "large": 10}``: scenario names and weights.

    Raises:
        ValueError: an unknown scenario, a weight that is not a non-negative integer, or
            weights that add up to zero.
    """
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")
        try:
            value = int(weight) if sep else 1
        except ValueError:
            raise ValueError(f"{part!r}: the weight must be an integer") from None
        if value < 0:
            raise ValueError(f"{part!r}: the weight must not be negative")
        mix[name] = mix.get(name, 0) + value
    if sum(mix.values()) <= 0:
        raise ValueError(f"the mix {text!r} has no positive weight")
    return mix


def assign_scenarios(mix: dict[str, int], orders: int, seed: int = 0) -> list[str]:
    """``orders`` scenario names in the proportions of ``mix`` (largest remainder, so the
    counts are exact), shuffled reproducibly."""
    total = sum(mix.values())
    quotas = {name: orders * weight / total for name, weight in mix.items()}
    counts = {name: math.floor(q) for name, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda n: (counts[n] - quotas[n], list(mix).index(n)))
    for name in by_remainder[: orders - sum(counts.values())]:
        counts[name] += 1
    names = [name for name, count in counts.items() for _ in range(count)]
    random.Random(seed).shuffle(names)
    return names


# --------------------------------------------------------------------------- following orders


@dataclass
class OrderRecord:
    """One placed order as the bench saw it (``perf_counter`` seconds)."""

    scenario: str
    published: float
    acked: float | None = None
    finished: float | None = None
    outcome: str | None = None
    detail: str | None = None


class OrderTracker:
    """Reads ``<prefix>order`` from the start (no consumer group): approves each of the
    bench's orders that asks for approval at once, and records when each one's terminal event
    arrives. Event types come from the headers; only cancellations are decoded (the reason)."""

    def __init__(self, settings: Settings, client: ChoreoClient, codec: Codec) -> None:
        self.settings = settings
        self.client = client
        self.codec = codec
        self.orders: dict[str, OrderRecord] = {}
        self.expected = 0
        self.finished = 0
        self.approvals = 0
        self.needs_attention = 0
        self.errors: list[str] = []
        self.all_done = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
        )
        self._task: asyncio.Task[None] | None = None
        self._approvals: set[asyncio.Task[None]] = set()

    def reset(self, expected: int) -> None:
        """Forget the orders so far (the warm-up) and expect ``expected`` new ones."""
        self.orders.clear()
        self.expected = expected
        self.finished = self.approvals = self.needs_attention = 0
        self.all_done.clear()

    async def start(self) -> None:
        await self._consumer.start()
        partitions = await partitions_of(self.settings, [topic_for("order.placed", self.settings)])
        self._consumer.assign(partitions)
        for tp in partitions:
            self._consumer.seek(tp, 0)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop following; waits for approvals in flight. Safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._approvals:
            await asyncio.gather(*self._approvals, return_exceptions=True)
        await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            arrived = time.perf_counter()
            for records in batch.values():
                for record in records:
                    self._see(record, arrived)

    def _see(self, record: ConsumerRecord, arrived: float) -> None:
        order_id = record.key.decode() if record.key else ""
        order = self.orders.get(order_id)
        event_type = header(record.headers, EVENT_TYPE)
        if order is None or event_type is None:
            return
        if event_type == "order.approval_requested":
            task = asyncio.create_task(self._approve(order_id))
            self._approvals.add(task)
            task.add_done_callback(self._approvals.discard)
        elif event_type == "order.needs_attention":
            self.needs_attention += 1
        elif event_type in TERMINAL and order.finished is None:
            order.finished = arrived
            if event_type == "order.completed":
                order.outcome = "completed"
            else:
                order.outcome, order.detail = self._reason(record)
            self.finished += 1
            if self.finished >= self.expected:
                self.all_done.set()

    def _reason(self, record: ConsumerRecord) -> tuple[str, str | None]:
        """``cancelled:<reason>`` and the cancellation's detail."""
        try:
            event = self.codec.decode(record.value).event
        except Exception as exc:  # report, never stop following
            self.errors.append(f"undecodable cancellation at offset {record.offset}: {exc}")
            return "cancelled:?", None
        if not isinstance(event, OrderCancelled):
            return "cancelled:?", None
        return f"cancelled:{event.reason}", event.detail

    async def _approve(self, order_id: str) -> None:
        try:
            await self.client.approve(order_id, by=APPROVER, reason="auto-approved by the bench")
            self.approvals += 1
        except Exception as exc:  # reported; the order then times out and shows as unexpected
            self.errors.append(f"approving {order_id} failed: {exc}")


# --------------------------------------------------------------------------- measurements


def cpu_seconds(pid: int, *, with_children: bool = False) -> float | None:
    """User + system CPU seconds of ``pid`` (plus its children's, live and reaped)."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system
        if with_children:
            total += times.children_user + times.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
        return total
    except psutil.Error:
        return None


def peak_rss_kb(pid: int) -> int | None:
    """The process's peak resident set size (``VmHWM`` in ``/proc/<pid>/status``), in kB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Watched:
    """A process whose CPU time and memory the bench follows."""

    name: str
    pid: int
    with_children: bool = False
    cpu_before: float | None = None
    cpu_after: float | None = None
    peak_kb: int = 0

    def sample(self) -> None:
        kb = peak_rss_kb(self.pid)
        if kb is not None:
            self.peak_kb = max(self.peak_kb, kb)


async def _sample_memory(watched: Sequence[Watched], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for w in watched:
            w.sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def end_offsets(settings: Settings, topics: Sequence[str]) -> int:
    """The sum of the end offsets of every partition of ``topics``: records written so far."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await partitions_of(settings, topics))
    finally:
        await consumer.stop()
    return int(sum(ends.values()))


async def group_positions(settings: Settings, groups: Sequence[str]) -> dict[str, int]:
    """The sum of each consumer group's committed offsets (0 before its first commit)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        positions: dict[str, int] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            positions[group] = sum(max(0, meta.offset) for meta in committed.values())
        return positions
    finally:
        await admin.close()


async def projector_position(db: Database, settings: Settings) -> tuple[int, int]:
    """The projector's checkpoints (sum of next offsets) and how many rows it has logged."""
    schema = PROJECTOR.schema(settings)
    async with db.pool.acquire() as conn:
        if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.projector_offsets") is None:
            return 0, 0
        checkpoint = await conn.fetchval(
            f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.projector_offsets"
        )
        rows = await conn.fetchval(f"SELECT count(*) FROM {schema}.event_log")
    return int(checkpoint), int(rows)


def foreign_load(own: Sequence[int]) -> str:
    """What else loads the machine: the 1-minute load average and how many Choreo service
    processes run that are not ``own`` (another platform, e.g. someone's e2e tests)."""
    others = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["pid"] not in own and "choreo" in cmdline and "service" in cmdline:
            others += 1
    return f"load average {os.getloadavg()[0]:.1f}, {others} other choreo processes"


def group_of(settings: Settings, process: str) -> str | None:
    """The consumer group of a service process (``<prefix><name>``); None for the others."""
    spec = registry.get(process)
    return spec.group(settings) if spec.is_service else None


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class SagaConfig:
    """What to run."""

    orders: int = 1000
    rate: float | None = None
    mix: dict[str, int] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    tracing: bool = True
    timeout_s: float = 900.0
    in_flight: int = 1000
    trace_sample: float = 1.0
    """Share of orders traced (OpenTelemetry's parent-based trace-id-ratio sampler): the
    bench opens each order's root span, and every process follows its decision."""


@dataclass
class ProcessFigures:
    """One process's share of the run."""

    name: str
    pid: int | None
    consumed: int | None = None
    consumed_per_s: float | None = None
    cpu_s_total: float | None = None
    cpu_s_run: float | None = None
    peak_rss_mb: float | None = None


@dataclass
class SagaResult:
    """Everything ``choreo bench`` measured."""

    config: SagaConfig
    prefix: str
    log_dir: Path
    placed: int = 0
    finished: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    unexpected: dict[str, int] = field(default_factory=dict)
    approvals: int = 0
    needs_attention: int = 0
    window_s: float = 0.0
    publish_s: float = 0.0
    events: int = 0
    latency: LatencySummary = field(default_factory=lambda: LatencySummary.of([]))
    processes: list[ProcessFigures] = field(default_factory=list)
    infrastructure: list[ProcessFigures] = field(default_factory=list)
    projector_rows: int = 0
    projector_lag: int = 0
    raw_kafka: RawKafkaResult | None = None
    codec: CodecResult | None = None
    copy: CopyResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    load: dict[str, str] = field(default_factory=dict)
    """What else loaded the machine at the start and at the end (see :func:`foreign_load`)."""
    env: dict[str, str] = field(default_factory=dict)
    """The CHOREO_* settings the processes got beyond the defaults (the bench's and the
    caller's environment's)."""
    points: list[tuple[float, float]] = field(default_factory=list)
    """(publish time since the first publish, latency), seconds, per finished order."""
    completions: list[float] = field(default_factory=list)
    """Terminal arrival times since the first publish."""
    placements: list[float] = field(default_factory=list)

    @property
    def orders_per_second(self) -> float:
        return self.finished / self.window_s if self.window_s else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.window_s if self.window_s else 0.0

    @property
    def projector_rows_per_second(self) -> float:
        return self.projector_rows / self.window_s if self.window_s else 0.0

    def ratios(self) -> list[Ratio]:
        """Choreo next to each baseline."""
        ratios: list[Ratio] = []
        if self.raw_kafka is not None:
            ratios.append(
                Ratio(
                    "events/s vs raw aiokafka produce→consume",
                    "msg/s",
                    self.events_per_second,
                    self.raw_kafka.messages_per_second,
                )
            )
        if self.codec is not None:
            ratios += [
                Ratio("encode: Codec vs fastavro", "µs/event", self.codec.codec_encode_us,
                      self.codec.fastavro_encode_us, "≤ 1.3x"),
                Ratio("decode: Codec vs fastavro", "µs/event", self.codec.codec_decode_us,
                      self.codec.fastavro_decode_us, "≤ 1.3x"),
            ]  # fmt: skip
        if self.copy is not None:
            ratios.append(
                Ratio(
                    "projector logged rows/s vs asyncpg COPY",
                    "rows/s",
                    self.projector_rows_per_second,
                    self.copy.rows_per_second,
                )
            )
        return ratios

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None, digits: int = 1) -> float | None:
            return None if value is None or not math.isfinite(value) else round(value, digits)

        return {
            "benchmark": "saga",
            "config": {
                **asdict(self.config),
                "rate": self.config.rate or "max",
                "env": self.env,
            },
            "machine": {**machine_info(), "foreign_load": self.load},
            "prefix": self.prefix,
            "logs": str(self.log_dir),
            "orders": {
                "placed": self.placed,
                "finished": self.finished,
                "outcomes": self.outcomes,
                "unexpected": self.unexpected,
                "approved_by_bench": self.approvals,
                "needs_attention": self.needs_attention,
            },
            "throughput": {
                "window_s": r(self.window_s, 3),
                "publish_s": r(self.publish_s, 3),
                "orders_per_s": r(self.orders_per_second),
                "events": self.events,
                "events_per_s": r(self.events_per_second),
                "projector_rows": self.projector_rows,
                "projector_rows_per_s": r(self.projector_rows_per_second),
                "projector_lag_at_end": self.projector_lag,
            },
            "latency_ms": {
                k: r(v) if isinstance(v, float) else v for k, v in asdict(self.latency).items()
            },
            "processes": [asdict(p) for p in self.processes],
            "infrastructure": [asdict(p) for p in self.infrastructure],
            "baselines": {
                "raw_kafka": self.raw_kafka.to_json() if self.raw_kafka else None,
                "codec": self.codec.to_json() if self.codec else None,
                "copy": self.copy.to_json() if self.copy else None,
            },
            "ratios": [x.to_json() for x in self.ratios()],
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "exit_codes": self.exit_codes,
            "errors": self.errors,
        }


# --------------------------------------------------------------------------- the run


def run(config: SagaConfig, log: Log, status: Log) -> SagaResult:
    """Bring the stack up (idempotent), then run the benchmark (see the module docstring)."""
    from choreo.stack import Stack

    started = time.perf_counter()
    infra = {s.name: s.pid for s in Stack().up(log) if s.pid is not None and s.running}
    stack_s = time.perf_counter() - started
    try:
        result = asyncio.run(_run(config, log, status, infra))
    finally:
        tracing.shutdown_tracing()
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
    if not config.tracing:
        env["CHOREO_TRACING_ENABLED"] = "false"
    else:
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = str(config.trace_sample)
        # The bench is where orders are placed, so it opens their traces, as the CLI does.
        os.environ.update(env)
        tracing.configure_tracing("bench", settings)
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
    log("platform stopped; measuring the baselines")
    await _baselines(settings, result, log, lap)
    return result


def _ample_seed_file(log_dir: Path) -> Path:
    """The default stock with every plentiful SKU raised to :data:`AMPLE_STOCK`."""
    default = orjson.loads((PROJECT_ROOT / "services/inventory/seed_stock.json").read_bytes())
    stock = {sku: units if sku in SCARCE_SKUS else AMPLE_STOCK for sku, units in default.items()}
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "seed_stock.json"
    path.write_bytes(orjson.dumps(stock, option=orjson.OPT_INDENT_2))
    return path


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

    The warm-up places one order of each scenario of the mix and waits for them to end (not
    counted): consumer groups have joined and code paths are warm when the clock starts.
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
        warm_up = [name for name, weight in config.mix.items() if weight > 0]
        tracker.reset(expected=len(warm_up))
        await tracker.start()
        status("warming up: one order per scenario of the mix")
        await _place_all(client, tracker, warm_up, config)
        try:
            await asyncio.wait_for(tracker.all_done.wait(), WARM_UP_TIMEOUT_S)
        except TimeoutError:
            result.errors.append(f"warm-up orders not all finished in {WARM_UP_TIMEOUT_S}s")
        tracker.reset(expected=len(scenarios))
        lap("warm_up")
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(_sample_memory(everything, stop_sampling))
        ticker: asyncio.Task[None] | None = None
        try:
            ends_before = await end_offsets(settings, topics)
            groups_before = await group_positions(settings, list(groups.values()))
            projector_before, rows_before = await projector_position(db, settings)
            for w in everything:
                w.cpu_before = cpu_seconds(w.pid, with_children=w.with_children)

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


def _figures(w: Watched, consumed: int | None, window: float) -> ProcessFigures:
    run_s = None
    if w.cpu_before is not None and w.cpu_after is not None:
        run_s = round(w.cpu_after - w.cpu_before, 2)
    return ProcessFigures(
        name=w.name,
        pid=w.pid,
        consumed=consumed,
        consumed_per_s=round(consumed / window, 1) if consumed is not None else None,
        cpu_s_total=round(w.cpu_after, 2) if w.cpu_after is not None else None,
        cpu_s_run=run_s,
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
