"""The generic saga read model: any saga's status, steps and compensations, from its events.

:func:`fold_saga` turns the logged events of one saga into its ``saga_status`` row, knowing
nothing of any saga type: everything comes from the :class:`~sagas.definition.SagaDefinition`
(its start, steps, human tasks, compensations and endings). Like the order model
(:mod:`projections.model`) it depends only on the *set* of events, never on the order they
were consumed in (live processing and a rebuild interleave the topics differently): each fact
is the earliest matching event by ``(occurred_at, event_id)``, and the status comes from which
facts are present.

What a definition does not name as data, the model learns by asking its render functions:
the event types a human task's request and the three endings emit (:func:`emitted_type`).

Statuses: ``running`` (with the definition's ``milestone`` of the newest step that succeeded,
e.g. ``paid``), a human task's ``waiting_status`` (``awaiting_approval``) while a person is
asked, ``compensating`` once a critical step failed or a compensation was sent,
``needs_attention`` (until the saga ends, as in the order model), ``completed``, ``cancelled``.

What the log does not say, the model infers: a human task is on the saga's path when its
request was emitted (its condition held, with the knobs the coordinator runs with); a deadline
leaves no event, so a step still open when the saga ended ``timed_out`` if the saga completed
or was cancelled with its deadline's reason, else it was ``abandoned``. Progress counts the
steps on the path (critical steps, optional steps unless the saga ended without them, tasks
asked) and, as done, those an event settled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from events.model import Event
from projections.model import RANK, LoggedEvent
from sagas.definition import Fails, HumanTask, On, SagaDefinition, Step
from sagas.emit import Emit, Render, SagaData

RUNNING = "running"
COMPENSATING = "compensating"
NEEDS_ATTENTION = "needs_attention"
COMPLETED = "completed"
CANCELLED = "cancelled"
ENDED = frozenset({COMPLETED, CANCELLED})


def stage(status: str, milestone: str | None) -> str:
    """A saga's status in one word: its milestone while it runs (an order's ``paid``), else its
    status (``awaiting_approval``, ``compensating``, ``completed``, ...)."""
    return milestone if status == RUNNING and milestone is not None else status


# A step's state in the timeline.
PENDING, ACTIVE, AWAITING = "pending", "running", "awaiting"
SUCCEEDED, FAILED, TIMED_OUT = "succeeded", "failed", "timed_out"
SKIPPED, ABANDONED = "skipped", "abandoned"

_PROBE_AT = datetime(2000, 1, 1, tzinfo=UTC)
_emitted: dict[tuple[str, int, str], str] = {}
"""(saga type, version, role) → the event type that render emits, once learned."""


def emitted_type(
    d: SagaDefinition, role: str, render: Render, data: Callable[[], SagaData]
) -> str | None:
    """The event type ``render`` of ``d`` emits (``role`` names it for the cache), learned by
    calling it once with the saga's data (``data()``) as the coordinator would; ``None`` while
    the data does not yet hold what it needs (it is asked again with more)."""
    key = (d.saga_type, d.version, role)
    known = _emitted.get(key)
    if known is not None:
        return known
    probe = Emit(
        data=data(),
        at=_PROBE_AT,
        knobs=d.knob_values(),
        reason=d.reasons[0] if d.reasons else "",
        step=d.nodes[0].name,
    )
    try:
        event_type = render(probe).event_type
    # A render is the definition's own code: whatever it raises on partial data (a KeyError,
    # a pydantic ValidationError, ...) means only "not yet".
    except Exception:
        return None
    _emitted[key] = event_type
    return event_type


def rendered_by(
    render: Render, d: SagaDefinition, data: Callable[[], SagaData], event: LoggedEvent
) -> bool:
    """Whether ``event`` is what ``render`` emits (e.g. a task's timeout rejection rather than
    a person's): its payload agrees on every field that does not depend on the instant."""
    try:
        a, b = (
            render(Emit(data(), at, d.knob_values())).model_dump(mode="json")
            for at in (_PROBE_AT, _PROBE_AT + timedelta(days=1))
        )
    except Exception:  # as in emitted_type: the data does not hold what it needs
        return False
    fixed = {k: v for k, v in a.items() if b.get(k) == v}
    return all(event.payload.get(k) == v for k, v in fixed.items())


@dataclass
class StepView:
    """One step or human task of a saga, as far as its events tell."""

    step: str
    kind: str  # "step" or "human task"
    critical: bool
    state: str = PENDING
    on_path: bool = True
    triggered_at: datetime | None = None
    triggered_by: str | None = None
    started_at: datetime | None = None
    started_by: str | None = None
    finished_at: datetime | None = None
    finished_by: str | None = None
    reason: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "kind": self.kind,
            "critical": self.critical,
            "state": self.state,
            "on_path": self.on_path,
            "triggered_at": _iso(self.triggered_at),
            "triggered_by": self.triggered_by,
            "started_at": _iso(self.started_at),
            "started_by": self.started_by,
            "finished_at": _iso(self.finished_at),
            "finished_by": self.finished_by,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass
class CompensationView:
    """One step's undo: its command (sent ``attempts`` times) and its acknowledgement."""

    step: str
    command: str
    acknowledged_by: str | None
    sent_at: datetime
    attempts: int
    acknowledged_at: datetime | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "command": self.command,
            "acknowledged_by": self.acknowledged_by,
            "sent_at": _iso(self.sent_at),
            "attempts": self.attempts,
            "acknowledged_at": _iso(self.acknowledged_at),
            "reason": self.reason,
        }


@dataclass
class SagaView:
    """A row of ``saga_status``."""

    saga_type: str
    saga_key: str
    version: int
    status: str = RUNNING
    milestone: str | None = None
    reason: str | None = None
    current_steps: list[str] = field(default_factory=list)
    steps_done: int = 0
    steps_expected: int = 0
    started_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    steps: list[StepView] = field(default_factory=list)
    compensations: list[CompensationView] = field(default_factory=list)
    event_count: int = 0
    trace_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "saga_type": self.saga_type,
            "saga_key": self.saga_key,
            "version": self.version,
            "status": self.status,
            "milestone": self.milestone,
            "reason": self.reason,
            "current_steps": self.current_steps,
            "progress": {"done": self.steps_done, "expected": self.steps_expected},
            "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at),
            "ended_at": _iso(self.ended_at),
            "steps": [s.to_json() for s in self.steps],
            "compensations": [c.to_json() for c in self.compensations],
            "event_count": self.event_count,
            "trace_id": self.trace_id,
            "attributes": self.attributes,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class _Log:
    """A saga's events by type, each list earliest first, with typed payloads on demand."""

    def __init__(self, d: SagaDefinition, events: Iterable[LoggedEvent]) -> None:
        self.d = d
        self.by_type: dict[str, list[LoggedEvent]] = defaultdict(list)
        for event in sorted(events, key=RANK):
            self.by_type[event.event_type].append(event)
        self._models: dict[str, Event] = {}
        self._first: dict[int, LoggedEvent | None] = {}
        self._data: dict[str, Any] | None = None

    def model(self, event: LoggedEvent) -> Event:
        """The event's payload as its catalog model (for a definition's predicates)."""
        found = self._models.get(event.event_id)
        if found is None:
            found = self.d.catalog[event.event_type].model_validate(event.payload)
            self._models[event.event_id] = found
        return found

    def all(self, on: On) -> list[LoggedEvent]:
        events = self.by_type.get(on.event_type, [])
        if on.where is None:
            return events
        return [e for e in events if on.matches(self.model(e))]

    def first(self, on: On | None) -> LoggedEvent | None:
        if on is None:
            return None
        if on.where is None:  # most Ons: the earliest event of the type
            events = self.by_type.get(on.event.event_type)
            return events[0] if events else None
        # Asked for the same On by the captures, the steps and the tasks: once per fold.
        key = id(on)
        if key in self._first:
            return self._first[key]
        found = self._first[key] = next(iter(self.all(on)), None)
        return found

    def first_of(self, event_type: str | None) -> LoggedEvent | None:
        return next(iter(self.by_type.get(event_type or "", [])), None)

    def data(self) -> SagaData:
        """What the saga captured, as the coordinator does (only render functions need it)."""
        if self._data is None:
            self._data = _data(self.d, self)
        return self._data

    def describe(self, on: On, event: LoggedEvent) -> str:
        return on.describe(self.model(event)) if on.detail is not None else _reason(event)


def _reason(event: LoggedEvent) -> str:
    reason = event.payload.get("reason")
    return reason if isinstance(reason, str) else event.event_type


def _earliest(*found: LoggedEvent | None) -> LoggedEvent | None:
    earliest = None
    for event in found:
        if event is not None and (earliest is None or RANK(event) < RANK(earliest)):
            earliest = event
    return earliest


def _data(d: SagaDefinition, log: _Log) -> dict[str, Any]:
    """What the saga captured (as the coordinator does), for the render functions."""
    ons: list[On] = [d.start]
    for node in d.nodes:
        if isinstance(node, HumanTask):
            ons += [node.approve_on, *([node.reject_on.on] if node.reject_on.on else [])]
        else:
            ons += [*node.succeeded_on, *[x.on for x in node.fails if x.on is not None]]
            ons += [o for o in (node.triggered_by, node.started_on) if o is not None]
    data: dict[str, Any] = {}
    for on in ons:
        event = log.first(on) if on.capture else None
        if event is not None:
            data.update({name: event.payload.get(src) for name, src in on.capture.items()})
    return data


def fold_saga(d: SagaDefinition, saga_key: str, events: Iterable[LoggedEvent]) -> SagaView:
    """The ``saga_status`` row of the saga ``saga_key`` of definition ``d``, given all of its
    logged events."""
    evs = list(events)
    view = SagaView(d.saga_type, saga_key, d.version, milestone=d.start_status)
    view.event_count = len(evs)
    if not evs:
        return view
    log = _Log(d, evs)
    start = log.first(d.start)
    if start is not None:
        view.started_at = start.occurred_at
        # A saga's trace is its start event's; its attributes what the start captured (the
        # order's customer and total): what a list of the type shows and filters on.
        view.trace_id = start.traceparent.split("-")[1] if start.traceparent else None
        view.attributes = {name: start.payload.get(src) for name, src in d.start.capture.items()}
    view.updated_at = max(e.occurred_at for e in evs)
    ends = {
        role: log.first_of(emitted_type(d, role, render, log.data))
        for role, render in (
            (COMPLETED, d.endings.completed),
            (CANCELLED, d.endings.cancelled),
            (NEEDS_ATTENTION, d.endings.needs_attention),
        )
    }
    for node in d.nodes:
        if isinstance(node, HumanTask):
            view.steps.append(_task(d, node, log))
        else:
            view.steps.append(_step(node, start, log))
    view.compensations = _compensations(d, log)
    _conclude(d, view, ends)
    return view


def _step(step: Step, start: LoggedEvent | None, log: _Log) -> StepView:
    s = StepView(step.name, "step", step.critical)
    trigger = log.first(step.triggered_by) if step.triggered_by is not None else start
    signal = log.first(step.started_on)
    if trigger is not None:
        s.triggered_at, s.triggered_by = trigger.occurred_at, trigger.event_type
    began = signal or trigger
    if began is not None:
        s.started_at, s.started_by = began.occurred_at, began.event_type
    succeeded = _earliest(*map(log.first, step.succeeded_on))
    failures = [(e, x) for x in step.fails if x.on is not None and (e := log.first(x.on))]
    failed: tuple[LoggedEvent, Fails] | None = (
        min(failures, key=lambda pair: RANK(pair[0])) if failures else None
    )
    if failed is not None and (succeeded is None or RANK(failed[0]) < RANK(succeeded)):
        event, how = failed
        s.state, s.reason = FAILED, how.reason
        s.detail = log.describe(how.on, event) if how.on is not None else None
        s.finished_at, s.finished_by = event.occurred_at, event.event_type
    elif succeeded is not None:
        s.state, s.finished_at, s.finished_by = (
            SUCCEEDED,
            succeeded.occurred_at,
            succeeded.event_type,
        )
    elif began is not None:
        s.state = ACTIVE
    return s


def _task(d: SagaDefinition, task: HumanTask, log: _Log) -> StepView:
    s = StepView(task.name, "human task", True)
    asked = log.first_of(emitted_type(d, f"{task.name}.request", task.request, log.data))
    approved = log.first(task.approve_on)
    rejected = log.first(task.reject_on.on)
    if asked is None:
        # Not asked: the condition did not hold (the coordinator decided alone) or not yet.
        s.on_path = False
        if approved is not None:
            s.state, s.finished_at, s.finished_by = SKIPPED, approved.occurred_at, "auto"
        return s
    s.triggered_at = s.started_at = asked.occurred_at
    s.triggered_by = s.started_by = asked.event_type
    answer = _earliest(approved, rejected)
    if answer is None:
        s.state = AWAITING
    elif answer is approved:
        s.state = SUCCEEDED
    elif rendered_by(task.timeout_event, d, log.data, answer):
        s.state, s.reason = TIMED_OUT, task.timeout_reason
    else:
        assert task.reject_on.on is not None
        assert rejected is not None
        s.state, s.reason = FAILED, task.reject_on.reason
        s.detail = log.describe(task.reject_on.on, rejected)
    if answer is not None:
        s.finished_at, s.finished_by = answer.occurred_at, answer.event_type
    return s


def _compensations(d: SagaDefinition, log: _Log) -> list[CompensationView]:
    found = []
    for step in d.steps:
        comp = step.compensation
        if comp is None:
            continue
        sent = log.by_type.get(comp.command.event_type, [])
        if not sent:
            continue
        ack_type = comp.acknowledged_by.event_type if comp.acknowledged_by else None
        ack = log.first_of(ack_type)
        reason = sent[0].payload.get("reason")
        found.append(
            CompensationView(
                step.name,
                comp.command.event_type,
                ack_type,
                sent[0].occurred_at,
                len(sent),
                ack.occurred_at if ack is not None else None,
                reason if isinstance(reason, str) else None,
            )
        )
    # As sent; at one instant, newest step first (the order compensations run in).
    flow = [step.name for step in d.steps]
    return sorted(found, key=lambda c: (c.sent_at, -flow.index(c.step)))


def _conclude(d: SagaDefinition, view: SagaView, ends: dict[str, LoggedEvent | None]) -> None:
    """Status, reason, timeouts, milestone, current steps and progress from the steps."""
    failed = [s for s in view.steps if s.state in (FAILED, TIMED_OUT) and s.critical]
    cancelled, completed = ends[CANCELLED], ends[COMPLETED]
    if cancelled is not None:
        view.status, view.ended_at = CANCELLED, cancelled.occurred_at
        view.reason = _cancel_reason(d, view, cancelled, failed)
    elif completed is not None:
        view.status, view.ended_at = COMPLETED, completed.occurred_at
    elif ends[NEEDS_ATTENTION] is not None:
        view.status = NEEDS_ATTENTION
    elif failed or view.compensations:
        view.status = COMPENSATING
    else:
        waiting = next((s for s in view.steps if s.state == AWAITING), None)
        view.status = RUNNING if waiting is None else _waiting_status(d, waiting.step)
    for s in view.steps:
        if view.status in ENDED and s.state in (ACTIVE, AWAITING):
            s.state = TIMED_OUT if _timed_out(d, view, s) else ABANDONED
        if view.status in ENDED and s.state == PENDING and not s.critical:
            s.on_path = False  # an optional step the saga ended without
    milestones = [
        m for s in view.steps if s.state == SUCCEEDED and (m := _milestone(d, s.step)) is not None
    ]
    view.milestone = milestones[-1] if milestones else d.start_status
    if view.status == COMPENSATING:
        view.current_steps = ["compensation"]
    elif view.status not in ENDED:
        view.current_steps = [s.step for s in view.steps if s.state in (ACTIVE, AWAITING)]
    on_path = [s for s in view.steps if s.on_path]
    view.steps_expected = len(on_path)
    # Done: settled by an event (a task's timeout rejects with one; a step's deadline not).
    view.steps_done = sum(1 for s in on_path if s.finished_at is not None)


def _cancel_reason(
    d: SagaDefinition, view: SagaView, cancelled: LoggedEvent, failed: Sequence[StepView]
) -> str | None:
    """The reason the cancellation names when it is one of the definition's, else the first
    critical failure's, else the deadline reason of a step left unanswered."""
    named = cancelled.payload.get("reason")
    if isinstance(named, str) and named in d.reasons:
        return named
    first = min(failed, key=lambda s: (s.finished_at or _PROBE_AT, s.step), default=None)
    if first is not None:
        return first.reason
    for s in view.steps:
        node = d.node(s.step)
        if s.state == ACTIVE and isinstance(node, Step) and node.deadlines.reason is not None:
            return node.deadlines.reason
    return None


def _timed_out(d: SagaDefinition, view: SagaView, s: StepView) -> bool:
    """Whether a step still open when the saga ended ran out of time (rather than being left
    behind by another step's failure)."""
    node = d.node(s.step)
    if isinstance(node, HumanTask):
        return view.reason == node.timeout_reason
    limited = node.deadlines.pick_up is not None or node.deadlines.answer is not None
    return limited and (view.status == COMPLETED or view.reason == node.deadlines.reason)


def _milestone(d: SagaDefinition, name: str) -> str | None:
    node = d.node(name)
    return node.milestone if isinstance(node, Step) else None


def _waiting_status(d: SagaDefinition, name: str) -> str:
    node = d.node(name)
    return node.waiting_status if isinstance(node, HumanTask) else RUNNING
