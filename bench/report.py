"""The pure parts of a benchmark report: percentiles, rates over time, ratios, the plot.

Nothing here touches Kafka or PostgreSQL, so it is unit-tested without the stack.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from events.settings import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
"""Where plots and JSON documents go by default (git-ignored)."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated between the two
    nearest ranks (numpy's default method). NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles of a set of samples, in milliseconds."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        """Summarize latencies given in seconds."""
        ms = [s * 1000 for s in seconds]
        return cls(
            count=len(ms),
            p50_ms=percentile(ms, 50),
            p95_ms=percentile(ms, 95),
            p99_ms=percentile(ms, 99),
            max_ms=max(ms) if ms else math.nan,
            mean_ms=sum(ms) / len(ms) if ms else math.nan,
        )


def rolling_percentiles(
    points: Sequence[tuple[float, float]], window: int, quantiles: Sequence[float] = (50, 95)
) -> list[tuple[float, list[float]]]:
    """Percentiles of ``y`` over a window of ``window`` consecutive points ordered by ``x``:
    one ``(x, [p for each quantile])`` per point from the window's end on."""
    ordered = sorted(points)
    window = max(1, min(window, len(ordered)))
    out: list[tuple[float, list[float]]] = []
    for end in range(window, len(ordered) + 1):
        ys = [y for _, y in ordered[end - window : end]]
        out.append((ordered[end - 1][0], [percentile(ys, q) for q in quantiles]))
    return out


def per_second(times: Sequence[float], start: float = 0.0) -> list[int]:
    """How many of ``times`` (seconds) fall in each whole second from ``start`` on."""
    if not times:
        return []
    bins = [0] * (int(max(times) - start) + 1)
    for t in times:
        if t >= start:
            bins[int(t - start)] += 1
    return bins


@dataclass(frozen=True)
class Ratio:
    """Choreo's figure next to a baseline's, for one kind of work.

    ``ratio`` is ``choreo / baseline``: for rates, the fraction of the baseline Choreo
    reaches; for costs (µs per event), how many times the baseline Choreo spends.
    """

    what: str
    unit: str
    choreo: float
    baseline: float
    target: str = ""

    @property
    def ratio(self) -> float:
        return self.choreo / self.baseline if self.baseline else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "choreo": significant(self.choreo),
            "baseline": significant(self.baseline),
            "ratio": significant(self.ratio),
        }


def ratio_table(ratios: Sequence[Ratio], title: str = "Choreo vs baselines") -> Table:
    """A rich table of ratios: what, Choreo, baseline, ratio, target."""
    table = Table("what", "Choreo", "baseline", "ratio", "target", title=title)
    for r in ratios:
        table.add_row(
            r.what,
            f"{fmt(r.choreo)} {r.unit}",
            f"{fmt(r.baseline)} {r.unit}",
            f"{r.ratio:.3g}x" if math.isfinite(r.ratio) else "-",
            r.target,
        )
    return table


def fmt(value: float | int | None, digits: int = 1) -> str:
    """A figure for a table: thousands separators, ``digits`` decimals below 100."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def significant(value: float, digits: int = 4) -> float | None:
    """``value`` rounded to ``digits`` significant digits; None when not finite."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (and the load average as this is called)."""
    return {
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def timestamp() -> str:
    """A file-name-safe UTC timestamp, e.g. ``20250314T092653Z``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_plot(
    path: Path,
    latencies: Sequence[tuple[float, float]],
    completions: Sequence[float],
    *,
    title: str = "choreo bench",
    placements: Sequence[float] = (),
) -> Path:
    """Write a PNG: latency of each order (ms) over its publish time with rolling p50/p95
    (and, in grey, over its finish time: readable when everything was published at once),
    and orders finished (and placed) per second over time. Times are seconds since the first
    publish; ``latencies`` are ``(publish time, latency in seconds)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    try:
        if latencies:
            xs = [x for x, _ in latencies]
            ys = [y * 1000 for _, y in latencies]
            top.scatter(xs, ys, s=3, alpha=0.35, label="order, at its publish time")
            top.scatter([x + y for x, y in latencies], ys, s=2, alpha=0.2, color="grey",
                        label="order, at its finish time")  # fmt: skip
            rolling = rolling_percentiles(
                [(x, y * 1000) for x, y in latencies], max(10, len(latencies) // 50)
            )
            for i, label in enumerate(("rolling p50", "rolling p95")):
                top.plot([x for x, _ in rolling], [ps[i] for _, ps in rolling], label=label)
            top.legend(loc="upper left")
        top.set_ylabel("latency (ms)")
        top.set_title(f"{title}: latency by publish time")
        top.grid(alpha=0.3)
        done = per_second(completions)
        bottom.step(range(len(done)), done, where="post", label="finished (completed/cancelled)")
        if placements:
            placed = per_second(placements)
            bottom.step(range(len(placed)), placed, where="post", alpha=0.6, label="placed")
        bottom.set_xlabel("seconds since the first publish")
        bottom.set_ylabel("orders per second")
        bottom.set_title("throughput")
        bottom.legend(loc="upper left")
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
