"""A saga's trace waterfall, drawn by the console from Jaeger's query API.

The saga's trace id is the one its first logged event carries in its ``traceparent`` (the
runtime puts W3C trace context in every message's headers and the projector logs it; the
root span is where the saga's start event was published). :func:`load` asks Jaeger for that
trace (:func:`projections.traces.fetch_trace`) and :func:`layout` arranges its spans as rows:
depth-first in start order, each indented under its parent, a bar from its start to its end
as shares of the whole trace. Database statements (asyncpg's spans, a dozen per handler) are
counted but not drawn: the messaging and handler spans tell the saga's story, and Jaeger
keeps the rest. A span handling or publishing one of the saga's compensation
commands is marked, so the undo stands out. A page says why there is no waterfall (no trace
context logged, Jaeger has no such trace, Jaeger unreachable) instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from events.errors import ChoreoError
from events.settings import Settings
from projections.traces import OrderTrace, SpanNode, fetch_trace

MAX_SPANS = 400
"""At most this many rows: a trace of a long saga with its database spans can be large."""

log = logging.getLogger("choreo.api")


@dataclass(frozen=True)
class SpanRow:
    """One span as a row: indented by ``depth``, its bar at ``left``/``width`` (percent)."""

    span_id: str
    service: str
    name: str
    depth: int
    left: float
    width: float
    start_ms: float
    duration_ms: float
    events: list[str]
    undo: bool


@dataclass(frozen=True)
class Waterfall:
    """A trace's rows, or why there are none (``message``), and where to see it in Jaeger."""

    trace_id: str | None
    rows: list[SpanRow]
    total_ms: float
    services: list[str]
    message: str | None = None
    link: str | None = None
    truncated: int = 0
    statements: int = 0


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _depth_first(trace: OrderTrace) -> list[tuple[int, SpanNode]]:
    """The spans in tree order with their depth, database statements left out."""
    out: list[tuple[int, SpanNode]] = []
    stack = [(0, root) for root in reversed(trace.roots)]
    while stack:
        depth, node = stack.pop()
        if "db.system" not in node.attributes:
            out.append((depth, node))
        stack.extend((depth + 1, child) for child in reversed(node.children))
    return out


def layout(trace: OrderTrace, undo_commands: Collection[str], link: str | None) -> Waterfall:
    """The rows of ``trace``; spans naming one of ``undo_commands`` are marked as undo."""
    if not trace.spans:
        return Waterfall(trace.trace_id, [], 0.0, [], "The trace has no spans.", link)
    start = min(s.start_us for s in trace.spans)
    end = max(s.start_us + s.duration_us for s in trace.spans)
    whole = max(end - start, 1)
    rows = [
        SpanRow(
            node.span_id,
            node.service,
            node.name,
            depth,
            round(100 * (node.start_us - start) / whole, 3),
            max(round(100 * node.duration_us / whole, 3), 0.15),
            round((node.start_us - start) / 1000, 2),
            round(node.duration_us / 1000, 2),
            node.events,
            any(command in node.name for command in undo_commands),
        )
        for depth, node in _depth_first(trace)
    ]
    return Waterfall(
        trace.trace_id,
        rows[:MAX_SPANS],
        round(whole / 1000, 1),
        sorted(trace.services),
        link=link,
        truncated=max(len(rows) - MAX_SPANS, 0),
        statements=len(trace.spans) - len(rows),
    )


async def load(
    settings: Settings, traceparent: str | None, undo_commands: Collection[str]
) -> Waterfall:
    """The waterfall of the trace ``traceparent`` belongs to, or a message saying why none."""
    trace_id = trace_id_of(traceparent)
    if trace_id is None:
        return Waterfall(None, [], 0.0, [], "No trace context was logged with this saga.")
    ui = settings.jaeger_ui_url
    link = f"{ui.rstrip('/')}/trace/{trace_id}" if ui else None
    try:
        trace = await fetch_trace(settings, trace_id)
    except ChoreoError as exc:
        log.warning("console: trace %s unavailable: %s", trace_id, exc)
        return Waterfall(trace_id, [], 0.0, [], f"Jaeger cannot be reached: {exc}", link)
    if trace is None:
        message = (
            f"Jaeger has no trace {trace_id} (not sampled, not exported yet, or past its"
            " retention)."
        )
        return Waterfall(trace_id, [], 0.0, [], message, link)
    return layout(trace, undo_commands, link)
