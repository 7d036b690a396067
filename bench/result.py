"""A bench run's configuration and result: figures per process, latency, throughput and the
ratios to the baselines measured in the same run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.baselines import (
    CodecResult,
    CopyResult,
    RawKafkaResult,
)
from bench.report import LatencySummary, Ratio, machine_info
from choreo.mix import DEFAULT_MIX, parse_mix


@dataclass(frozen=True)
class SagaConfig:
    """What to run."""

    orders: int = 1000
    rate: float | None = None
    mix: dict[str, int] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    tracing: bool = True
    metrics: bool = True
    """Export the processes' metrics (``CHOREO_METRICS_ENABLED``), with or without tracing."""
    timeout_s: float = 900.0
    in_flight: int = 1000
    warm_up: int = 0
    """Orders of the mix placed at the run's rate before the clock starts (besides one per
    scenario), not counted: a freshly started broker's JIT compiler is still at work over its
    first minutes of traffic (at 20 orders/s Kafka took 23, 16 and 10 ms of CPU an order in
    the first three 30 s runs after a start)."""
    trace_sample: float = 1.0
    """Share of orders traced (OpenTelemetry's parent-based trace-id-ratio sampler): the
    bench opens each order's root span, and every process follows its decision."""
    baselines: bool = True
    """Measure the raw baselines after the run (`choreo bench peers` compares with the peers
    instead and skips them)."""
    keep_deployment: bool = False
    """Leave the run's topics, schemas and roles (`choreo bench peers` reads the services'
    tables for its invariants first, then removes them)."""


@dataclass
class ProcessFigures:
    """One process's share of the run."""

    name: str
    pid: int | None
    consumed: int | None = None
    consumed_per_s: float | None = None
    cpu_s_total: float | None = None
    cpu_s_run: float | None = None
    jit_cpu_s_run: float | None = None
    """Of ``cpu_s_run``, a JVM's JIT compiler threads' (None: not a JVM)."""
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
    notes: list[str] = field(default_factory=list)
    """What a reader of the figures should know (not errors), e.g. a broker still warming up."""
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
            "notes": self.notes,
        }
