"""What the console's templates draw with: number formats and chart geometry (inline SVG).

The charts are computed here and drawn by the templates as SVG, so a page needs no charting
library and renders the same without its script.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.amounts import amounts
from projections.key_paths import saga_page_url

STATUS_TONES = {
    "completed": "ok",
    "cancelled": "warn",
    "needs_attention": "bad",
    "awaiting_approval": "ask",
    "compensating": "warn",
}
"""Status → the colour family it is shown in (others: in flight)."""


def number(value: float | None) -> str:
    """``12,345`` (or ``—`` for nothing)."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def duration_ms(value: float | None) -> str:
    """``840 ms``, ``1.4 s``, ``2.1 min``."""
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return f"{value / 60_000:.1f} min"


def money(minor: int | None, currency: str | None) -> str:
    """``1,234.50 EUR`` from minor units."""
    return "—" if minor is None else f"{minor / 100:,.2f} {currency or ''}".strip()


def captured(
    attributes: dict[str, Any], keyed_by: Mapping[str, str] | None = None
) -> list[tuple[str, str, str | None]]:
    """What a saga's start captured, for a list: ``(name, value, link)``: an amount
    (:func:`projections.amounts.amounts`: ``refund_minor``) as money under its name without
    the suffix (``refund``), the currency then not again, a missing value left out. ``link``:
    the page of the saga whose key the value is, when ``keyed_by`` (saga type by key name,
    :attr:`sagas.registry.SagaRegistry.keyed_by`) names it, else None."""
    found = {f"{a['name']}_minor": a for a in amounts(attributes)}
    links = keyed_by or {}
    pairs: list[tuple[str, str, str | None]] = []
    for name, value in attributes.items():
        if value is None or (name == "currency" and found):
            continue
        amount = found.get(name)
        if amount is not None:
            shown = money(amount["minor"], amount["currency"])
            pairs.append((label(amount["name"]), shown, None))
        elif name in links:
            link = saga_page_url(links[name], str(value))
            pairs.append((label(name), str(value), link))
        else:
            pairs.append((label(name), str(value), None))
    return pairs


def clock(value: str | None) -> str:
    """``2026-11-21 12:00:05`` from an ISO time (UTC as stored)."""
    if not value:
        return "—"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float | None) -> str:
    """A stretch of time for people: ``12 s``, ``4 min 05 s``, ``3 h 20 min``, ``2 d 4 h``."""
    if seconds is None:
        return "—"
    whole = int(abs(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02} min"
    if minutes:
        return f"{minutes} min {secs:02} s"
    return f"{secs} s"


def tone(status: str) -> str:
    """The colour family of a status."""
    return STATUS_TONES.get(status, "run")


def label(name: str | None) -> str:
    """``awaiting_approval`` → ``awaiting approval``."""
    return (name or "").replace("_", " ")


@dataclass(frozen=True)
class Bar:
    """One bar of a column chart, in the chart's coordinates."""

    x: float
    y: float
    width: float
    height: float
    value: float
    title: str


@dataclass(frozen=True)
class Columns:
    """A column chart: bars, the value at the top of the scale, axis labels."""

    bars: list[Bar]
    top: float
    width: float
    height: float
    first: str
    last: str


def columns(
    series: Sequence[dict[str, Any]],
    key: str = "started",
    *,
    width: float = 1000,
    height: float = 120,
) -> Columns:
    """A count per minute (``{"minute", key}``: orders placed, sagas started) as columns, the
    scale rounded up."""
    top = _nice(max((p[key] for p in series), default=0))
    step = width / max(1, len(series))
    bars = []
    for i, point in enumerate(series):
        h = height * point[key] / top
        minute = datetime.fromisoformat(point["minute"]).strftime("%H:%M")
        bars.append(
            Bar(i * step + 1, height - h, step - 2, h, point[key], f"{minute}: {point[key]}")
        )
    first = datetime.fromisoformat(series[0]["minute"]).strftime("%H:%M") if series else ""
    last = datetime.fromisoformat(series[-1]["minute"]).strftime("%H:%M") if series else ""
    return Columns(bars, top, width, height, first, last)


@dataclass(frozen=True)
class Point:
    """One minute of a line chart, in the chart's coordinates."""

    x: float
    y50: float
    y95: float
    n: int
    title: str


@dataclass(frozen=True)
class Lines:
    """A p50/p95 line chart: one polyline per run of minutes with data (a minute without
    data breaks the line), the points, the value at the top of the scale, axis labels."""

    p50: list[str]
    p95: list[str]
    points: list[Point]
    top: float
    width: float
    height: float
    first: str
    last: str


def lines(series: Sequence[dict[str, Any]], *, width: float = 1000, height: float = 140) -> Lines:
    """Latency per minute (``{"minute", "n", "p50", "p95"}``, ms) as two lines."""
    top = _nice(max((p["p95"] for p in series if p["p95"] is not None), default=0))
    step = width / max(1, len(series) - 1)
    runs: list[list[Point]] = [[]]
    for i, p in enumerate(series):
        if p["p95"] is None:
            if runs[-1]:
                runs.append([])
            continue
        minute = datetime.fromisoformat(p["minute"]).strftime("%H:%M")
        title = (
            f"{minute}: p50 {duration_ms(p['p50'])}, p95 {duration_ms(p['p95'])}, {p['n']} finished"
        )
        y50 = height - height * p["p50"] / top
        runs[-1].append(Point(i * step, y50, height - height * p["p95"] / top, p["n"], title))
    kept = [run for run in runs if run]
    p50 = [" ".join(f"{q.x:.1f},{q.y50:.1f}" for q in run) for run in kept]
    p95 = [" ".join(f"{q.x:.1f},{q.y95:.1f}" for q in run) for run in kept]
    first = datetime.fromisoformat(series[0]["minute"]).strftime("%H:%M") if series else ""
    last = datetime.fromisoformat(series[-1]["minute"]).strftime("%H:%M") if series else ""
    return Lines(p50, p95, [q for run in kept for q in run], top, width, height, first, last)


def latency_scale(steps: dict[str, dict[str, float]]) -> float:
    """The top of the step-latency scale: the largest p95, rounded up."""
    return _nice(max((s["p95"] for s in steps.values()), default=0))


def share(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole`` (0 when there is no whole)."""
    return 0.0 if not whole else 100.0 * part / whole


def _nice(value: float) -> float:
    """The next 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if value <= factor * magnitude:
            return max(1.0, factor * magnitude)
    return max(1.0, 10 * magnitude)


FILTERS: dict[str, Callable[..., str]] = {
    "num": number,
    "ms": duration_ms,
    "span": span,
    "clock": clock,
    "tone": tone,
    "label": label,
}
GLOBALS: dict[str, Callable[..., Any]] = {
    "columns": columns,
    "lines": lines,
    "latency_scale": latency_scale,
    "share": share,
    "money": money,
    "captured": captured,
}
