"""The pure parts of `choreo bench peers`: each system's figures, Choreo's ratios to each peer,
the tables and the JSON document. Nothing here touches a process or a database."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rich.table import Table

from bench.report import LatencySummary, fmt, machine_info, significant
from choreo.mix import EXPECTED

Role = Literal["app", "client", "server", "postgres"]
"""What a measured process is to its system: its application processes, the bench's client,
a dedicated server (Kafka, the Temporal server) or the shared PostgreSQL."""
SYSTEMS = ("choreo", "dbos", "temporal")


@dataclass
class ProcessCost:
    """One process's CPU seconds over the run window and its peak resident memory."""

    name: str
    role: Role
    cpu_s: float | None = None
    peak_rss_mb: float | None = None


@dataclass
class SystemFigures:
    """One system's run at one arrival pattern."""

    system: str
    rate: float | None
    placed: int = 0
    finished: int = 0
    window_s: float = 0.0
    publish_s: float = 0.0
    latency: LatencySummary = field(default_factory=lambda: LatencySummary.of([]))
    outcomes: dict[str, int] = field(default_factory=dict)
    unexpected: dict[str, int] = field(default_factory=dict)
    processes: list[ProcessCost] = field(default_factory=list)
    invariants: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What a reader of the figures should know (not errors), e.g. Kafka's JIT still at work."""
    setup: str = ""

    @property
    def orders_per_second(self) -> float:
        return self.finished / self.window_s if self.window_s > 0 else math.nan

    @property
    def cpu_s(self) -> float:
        """CPU seconds of every measured process (PostgreSQL included) over the window."""
        return sum(p.cpu_s or 0.0 for p in self.processes)

    @property
    def cpu_ms_per_order(self) -> float:
        return self.cpu_s * 1000 / self.finished if self.finished else math.nan

    @property
    def peak_rss_mb(self) -> float:
        """The sum of the peak RSS of the system's own processes (the shared PostgreSQL,
        whose memory is mostly shared buffers, is left out)."""
        own = [p.peak_rss_mb for p in self.processes if p.role != "postgres" and p.peak_rss_mb]
        return sum(own) if own else math.nan

    def to_json(self) -> dict[str, Any]:
        def r(value: float) -> float | None:
            return significant(value)

        return {
            "system": self.system,
            "rate": self.rate or "burst",
            "setup": self.setup,
            "orders": {
                "placed": self.placed,
                "finished": self.finished,
                "outcomes": self.outcomes,
                "unexpected": self.unexpected,
            },
            "window_s": r(self.window_s),
            "publish_s": r(self.publish_s),
            "orders_per_s": r(self.orders_per_second),
            "latency_ms": {
                k: r(v) if isinstance(v, float) else v for k, v in asdict(self.latency).items()
            },
            "cpu_s": r(self.cpu_s),
            "cpu_ms_per_order": r(self.cpu_ms_per_order),
            "peak_rss_mb": r(self.peak_rss_mb),
            "processes": [asdict(p) for p in self.processes],
            "invariants": self.invariants,
            "errors": self.errors,
            "notes": self.notes,
        }


def figures_from_orders(
    system: str,
    rate: float | None,
    orders: Sequence[tuple[str, float, float | None, str | None]],
    publish_s: float = 0.0,
) -> SystemFigures:
    """A system's throughput, latency and outcomes from its orders: (scenario, published,
    finished or None, outcome or None), times in seconds on one clock. The window runs from
    the first publish to the last end."""
    figures = SystemFigures(system=system, rate=rate, placed=len(orders), publish_s=publish_s)
    ended = [(p, f) for _, p, f, _ in orders if f is not None]
    figures.finished = len(ended)
    if orders:
        first = min(p for _, p, _, _ in orders)
        figures.window_s = max((f for _, f in ended), default=first) - first
    figures.latency = LatencySummary.of([f - p for p, f in ended])
    figures.outcomes = dict(Counter(o or "unfinished" for _, _, _, o in orders))
    figures.unexpected = dict(
        Counter(f"{s} → {o or 'unfinished'}" for s, _, _, o in orders if o != EXPECTED.get(s))
    )
    return figures


@dataclass(frozen=True)
class PeerRatio:
    """Choreo's figure divided by a peer's; ``better`` says which way is good."""

    what: str
    unit: str
    choreo: float
    peer: float
    better: Literal["higher", "lower"]

    @property
    def ratio(self) -> float:
        if not (math.isfinite(self.choreo) and math.isfinite(self.peer)) or self.peer == 0:
            return math.nan
        return self.choreo / self.peer

    @property
    def choreo_ahead(self) -> bool | None:
        """Whether Choreo does better than the peer on this figure (None when unknown)."""
        if not math.isfinite(self.ratio):
            return None
        return self.ratio > 1 if self.better == "higher" else self.ratio < 1

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "unit": self.unit,
            "choreo": significant(self.choreo),
            "peer": significant(self.peer),
            "ratio": significant(self.ratio),
            "better": self.better,
            "choreo_ahead": self.choreo_ahead,
        }


def ratios(choreo: SystemFigures, peer: SystemFigures) -> list[PeerRatio]:
    """Choreo next to one peer at the same arrival pattern."""
    cl, pl = choreo.latency, peer.latency
    return [
        PeerRatio("orders/s", "orders/s", choreo.orders_per_second, peer.orders_per_second,
                  "higher"),
        PeerRatio("latency p50", "ms", cl.p50_ms, pl.p50_ms, "lower"),
        PeerRatio("latency p95", "ms", cl.p95_ms, pl.p95_ms, "lower"),
        PeerRatio("latency p99", "ms", cl.p99_ms, pl.p99_ms, "lower"),
        PeerRatio("CPU per order", "ms", choreo.cpu_ms_per_order, peer.cpu_ms_per_order,
                  "lower"),
        PeerRatio("peak RSS", "MB", choreo.peak_rss_mb, peer.peak_rss_mb, "lower"),
    ]  # fmt: skip


def pattern_label(rate: float | None) -> str:
    return f"{rate:g} orders/s" if rate else "burst (all at once)"


def figures_table(runs: Sequence[SystemFigures], orders: int) -> Table:
    """One row per system at one arrival pattern."""
    rate = runs[0].rate if runs else None
    table = Table(
        "system",
        "ended",
        "orders/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "CPU ms /order",
        "peak RSS MB",
        "invari- ants",
        "unex- pected",
        title=f"choreo bench peers: {orders} orders, {pattern_label(rate)}",
    )
    for f in runs:
        lat = f.latency
        inv = f.invariants
        table.add_row(
            f.system,
            f"{f.finished}/{f.placed}",
            fmt(f.orders_per_second),
            fmt(lat.p50_ms),
            fmt(lat.p95_ms),
            fmt(lat.p99_ms),
            fmt(f.cpu_ms_per_order),
            fmt(f.peak_rss_mb),
            "ok" if inv.get("ok") else ("-" if not inv else "VIOLATED"),
            str(sum(f.unexpected.values())),
        )
    return table


def ratio_table(choreo: SystemFigures, peers: Sequence[SystemFigures]) -> Table:
    """Choreo ÷ each peer, per figure (with which direction is better)."""
    title = f"Choreo as a ratio to each peer ({pattern_label(choreo.rate)})"
    table = Table("figure", *(f"Choreo ÷ {p.system}" for p in peers), "better", title=title)
    per_peer = [ratios(choreo, p) for p in peers]
    for i, first in enumerate(per_peer[0] if per_peer else []):
        cells = []
        for rs in per_peer:
            x = rs[i]
            mark = {True: " ✓", False: " ✗", None: ""}[x.choreo_ahead]
            cells.append(f"{x.ratio:.2f}x{mark}" if math.isfinite(x.ratio) else "-")
        table.add_row(first.what, *cells, f"{first.better} is better")
    return table


def parse_systems(text: str) -> tuple[str, ...]:
    """``choreo,dbos`` → ``("choreo", "dbos")``, in the order given, each once."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        raise ValueError(f"unknown system(s) {unknown or text!r}; choose from {', '.join(SYSTEMS)}")
    return tuple(dict.fromkeys(names))


def parse_rates(values: list[float] | None) -> tuple[float | None, ...]:
    """``--rate`` values; 0 (or none given) is a burst: every order at once."""
    if not values:
        return (None,)
    if any(v < 0 for v in values):
        raise ValueError("a rate must not be negative (0 is a burst)")
    return tuple(dict.fromkeys(v or None for v in values))


def document(runs: list[SystemFigures], config: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: configuration, machine, each run, and Choreo's ratios to each peer
    at each arrival pattern."""
    comparisons = []
    for rate in dict.fromkeys(r.rate for r in runs):
        at_rate = [r for r in runs if r.rate == rate]
        choreo = next((r for r in at_rate if r.system == "choreo"), None)
        if choreo is None:
            continue
        for peer in (r for r in at_rate if r.system != "choreo"):
            comparisons.append(
                {
                    "rate": rate or "burst",
                    "peer": peer.system,
                    "ratios": [x.to_json() for x in ratios(choreo, peer)],
                }
            )
    return {
        "benchmark": "peers",
        "config": config,
        "machine": machine_info(),
        "runs": [r.to_json() for r in runs],
        "choreo_vs_peers": comparisons,
    }
