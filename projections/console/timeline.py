"""A saga's timeline (Gantt) laid out for drawing as SVG on the server.

One row per step or human task (a bar from when it started, or was triggered, to when an
event settled it; an open step runs to the timeline's end), one per compensation (from its
first command to its acknowledgement, a tick at every send: the coordinator resends a command
until it is acknowledged), and a row of every event as a tick. A step settled on a later
attempt (an event whose payload names ``attempt`` > 1, as ``payment.charged`` does) says so.
Times are the events' own (``occurred_at``); the template draws what :func:`layout` computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from projections.model import LoggedEvent
from projections.sagas_model import ABANDONED, PENDING, SKIPPED, SagaView, StepView

LABEL_W, PLOT_W, ROW_H, AXIS_H = 190.0, 740.0, 28.0, 26.0
BAR_H = 14.0
TICKS = 5


@dataclass(frozen=True)
class Bar:
    """One row of the chart: ``kind`` is event, step, task or undo; ``state`` colours it."""

    name: str
    kind: str
    state: str
    y: float
    x: float = 0.0
    w: float = 0.0
    start: str | None = None
    end: str | None = None
    note: str = ""
    ticks: list[tuple[float, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Timeline:
    """The laid-out chart: rows, the axis's ticks (x, label), its size."""

    bars: list[Bar]
    axis: list[tuple[float, str]]
    width: float
    height: float
    label_w: float = LABEL_W


class _Scale:
    """Instants → x, over ``[t0, t1]``."""

    def __init__(self, t0: datetime, t1: datetime) -> None:
        self.t0 = t0
        self.seconds = max((t1 - t0).total_seconds(), 0.001)

    def x(self, moment: datetime) -> float:
        share = (moment - self.t0).total_seconds() / self.seconds
        return round(LABEL_W + max(0.0, min(1.0, share)) * PLOT_W, 1)

    def axis(self) -> list[tuple[float, str]]:
        return [
            (round(LABEL_W + PLOT_W * i / TICKS, 1), _offset(self.seconds * i / TICKS))
            for i in range(TICKS + 1)
        ]


def _offset(seconds: float) -> str:
    """``+0.42 s``, ``+12.5 s``, ``+3.2 min``, ``+1.5 h`` from the first event."""
    if seconds < 10:
        return f"+{seconds:.2f} s"
    if seconds < 120:
        return f"+{seconds:.1f} s"
    if seconds < 7200:
        return f"+{seconds / 60:.1f} min"
    return f"+{seconds / 3600:.1f} h"


def _attempts(step: StepView, events: Sequence[LoggedEvent]) -> int:
    """The attempt the event that settled ``step`` names (1 if none)."""
    for e in events:
        if e.event_type == step.finished_by and e.occurred_at.isoformat() == _iso(step.finished_at):
            attempt = e.payload.get("attempt")
            return attempt if isinstance(attempt, int) else 1
    return 1


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _step_bar(step: StepView, y: float, scale: _Scale, end: datetime, attempts: int) -> Bar:
    kind = "task" if step.kind == "human task" else "step"
    began = step.started_at or step.triggered_at
    if began is None or (step.state == PENDING and step.finished_at is None):
        note = "not started" if step.on_path else "not on this saga's path"
        if step.state == SKIPPED:
            note = "skipped: decided without a person"
        return Bar(step.step, kind, step.state, y, note=note)
    finished = step.finished_at or end
    x = scale.x(began)
    note = step.state.replace("_", " ")
    if step.reason:
        note += f": {step.reason.replace('_', ' ')}"
    if attempts > 1:
        note += f" (attempt {attempts})"
    if step.state == ABANDONED:
        note = "abandoned when the saga ended"
    return Bar(
        step.step,
        kind,
        step.state,
        y,
        x,
        max(scale.x(finished) - x, 2.0),
        _iso(began),
        _iso(step.finished_at),
        note,
    )


def layout(view: SagaView, events: Sequence[LoggedEvent], end: datetime) -> Timeline:
    """The chart of ``view`` (folded from ``events``), up to ``end`` (the saga's end, the
    instant looked at, or now while it runs)."""
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    if not ordered:
        return Timeline([], [], LABEL_W + PLOT_W + 40, AXIS_H)
    t0 = ordered[0].occurred_at
    scale = _Scale(t0, max(end, ordered[-1].occurred_at))
    y = AXIS_H
    bars = [
        Bar(
            "events",
            "event",
            "",
            y,
            ticks=[
                (scale.x(e.occurred_at), f"{e.event_type} {_offset_of(e, t0)}") for e in ordered
            ],
        )
    ]
    for step in view.steps:
        y += ROW_H
        bars.append(_step_bar(step, y, scale, end, _attempts(step, ordered)))
    for undo in view.compensations:
        y += ROW_H
        sends = [e for e in ordered if e.event_type == undo.command]
        x = scale.x(undo.sent_at)
        finished = undo.acknowledged_at or end
        note = "acknowledged" if undo.acknowledged_at else "waiting for acknowledgement"
        if undo.attempts > 1:
            note += f" after {undo.attempts} sends"
        bars.append(
            Bar(
                f"undo: {undo.command}",
                "undo",
                "succeeded" if undo.acknowledged_at else "running",
                y,
                x,
                max(scale.x(finished) - x, 2.0),
                _iso(undo.sent_at),
                _iso(undo.acknowledged_at),
                note,
                [(scale.x(e.occurred_at), f"{undo.command} {_offset_of(e, t0)}") for e in sends],
            )
        )
    return Timeline(bars, scale.axis(), LABEL_W + PLOT_W + 40, y + ROW_H)


def _offset_of(event: LoggedEvent, t0: datetime) -> str:
    return _offset((event.occurred_at - t0).total_seconds())
