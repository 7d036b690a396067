"""The saga definition API: a saga's shape as typed, frozen data, checked when it is defined.

A definition names the saga type, its version, the event that starts it and its key; its
steps (the event that sets each participant going, the events that mean it succeeded or
failed, whether it is critical, what it joins on, its two deadlines and its compensation);
its human tasks (approve/reject with a timeout that rejects or escalates) and the conditions
that gate them; and what the saga emits when it completes, is cancelled or needs attention.
Services stay choreographed: a step is *triggered* by an event some other participant
publishes; the coordinator only watches, decides policy and compensates.

Everything is checked in :meth:`SagaDefinition.__post_init__`, so a bad definition fails when
its module is imported, with a message naming the definition, the step and the problem
(:class:`InvalidDefinition`). Tunables are :class:`Knob` values with a default that operators
override per environment (:meth:`SagaDefinition.with_knobs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any, Generic, TypeAlias, TypeVar

from events.model import Event
from sagas.emit import Endings, Render, SagaData

T = TypeVar("T")


class InvalidDefinition(ValueError):
    """A saga definition breaks a rule; the message names the definition, step and problem."""


@dataclass(frozen=True, slots=True)
class Knob(Generic[T]):
    """A tunable value of a definition (a deadline, a threshold, a retry limit).

    Operators override it by name (:meth:`SagaDefinition.with_knobs`); the definition's
    version fixes the default.
    """

    name: str
    default: T
    description: str = ""


@dataclass(frozen=True, slots=True)
class On:
    """An event that tells the saga something, with what to take from it.

    Attributes:
        event: Its model (a catalog type).
        where: Only events this predicate accepts count (e.g. one email template).
        capture: Saga data name → the event's field to record under it.
        detail: The words a failure or note carries (default: the event's ``reason``).
    """

    event: type[Event]
    where: Callable[[Any], bool] | None = None
    capture: Mapping[str, str] = field(default_factory=dict)
    detail: Callable[[Any], str] | None = None

    @property
    def event_type(self) -> str:
        return self.event.event_type

    def matches(self, event: Event) -> bool:
        return event.event_type == self.event_type and (self.where is None or self.where(event))

    def describe(self, event: Event) -> str:
        if self.detail is not None:
            return self.detail(event)
        return str(getattr(event, "reason", event.event_type))


def on(
    event: type[Event],
    *,
    where: Callable[[Any], bool] | None = None,
    capture: Mapping[str, str] | None = None,
    detail: Callable[[Any], str] | None = None,
) -> On:
    """Shorthand for :class:`On`."""
    return On(event, where, dict(capture or {}), detail)


@dataclass(frozen=True, slots=True)
class Fails:
    """How a step fails: the event (or deadline) and the saga's cancel reason for it."""

    on: On | None
    reason: str


@dataclass(frozen=True, slots=True)
class Deadlines:
    """A step's two deadlines, as Temporal separates schedule-to-start from start-to-close.

    Attributes:
        pick_up: From the trigger to the participant taking the step up (its started
            signal); ``None``: no limit.
        answer: From taking it up (or, without a started signal, from the trigger) to its
            answer; ``None``: no limit.
        reason: The cancel reason when a critical step's deadline passes.
        explain: Words added to the cancel detail (e.g. what the compensation will undo).
    """

    pick_up: Knob[timedelta] | timedelta | None = None
    answer: Knob[timedelta] | timedelta | None = None
    reason: str | None = None
    explain: str | None = None


@dataclass(frozen=True, slots=True)
class Compensation:
    """How a succeeded step is undone: a command, retried until acknowledged.

    Attributes:
        command: Its model (for checks and drawings).
        render: Builds it (``Emit.reason``, ``Emit.attempt`` set).
        acknowledged_by: The event that acknowledges it.
        ack_timeout: Unacknowledged that long, it is sent again.
        max_attempts: Sends before the saga needs attention.
    """

    command: type[Event]
    render: Render
    acknowledged_by: type[Event] | None
    ack_timeout: Knob[timedelta] | timedelta = timedelta(seconds=10)
    max_attempts: Knob[int] | int = 5


@dataclass(frozen=True, slots=True)
class Step:
    """One participant's part of the saga.

    Attributes:
        name: Unique in the definition.
        triggered_by: The event that sets the participant going; ``None`` for a step that
            starts with the saga (the start event triggers it).
        after: Steps that must have succeeded first (a join when more than one).
        started_on: The participant's "taken up" signal, if it sends one.
        succeeded_on: Events that mean it succeeded (recorded even when late, so that what
            succeeded after the saga gave up is compensated).
        fails: Events that mean it failed, with the cancel reason each leads to.
        critical: A failure or timeout of a non-critical step only adds a note.
        deadlines: Its pick-up and answer deadlines.
        participant: The process that takes the step (and its compensation) up, by name
            (its consumer group is ``<prefix><participant>``). Without a started signal, the
            coordinator knows from that group's progress when the participant got to the
            trigger, and runs the answer deadline from then (see :mod:`saga_coordinator.fairness`).
        compensation: How it is undone when a later step fails.
        milestone: The saga's status once it succeeded (e.g. ``paid``).
        note: For a non-critical step, the note a failure or timeout leaves on completion:
            ``note(kind, detail)`` with kind ``failed`` or ``timed_out``.
    """

    name: str
    succeeded_on: Sequence[On]
    triggered_by: On | None = None
    after: Sequence[str] = ()
    started_on: On | None = None
    fails: Sequence[Fails] = ()
    critical: bool = True
    deadlines: Deadlines = Deadlines()
    participant: str | None = None
    compensation: Compensation | None = None
    milestone: str | None = None
    note: Callable[[str, str], str] | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    """A named test of the saga's data and knob values; the name is what a drawing shows.

    ``knobs`` lists the knobs the test reads (so that they can be tuned and are shown).
    """

    description: str
    test: Callable[[SagaData, Mapping[str, Any]], bool]
    knobs: Sequence[Knob[Any]] = ()


@dataclass(frozen=True, slots=True)
class HumanTask:
    """A decision a person takes (approve or reject), asked only when ``when`` holds.

    When it does not hold, the coordinator decides at once and emits ``auto`` (e.g.
    ``order.approved`` by ``policy:auto``), which the participants after it react to.

    Attributes:
        name: Unique in the definition.
        after: Steps that must have succeeded first.
        when: Whether a person must decide.
        request: Emitted to ask (``Emit.data``, the expiry in ``Emit.detail``).
        auto: Emitted when no person needs to decide.
        approve_on: The event of a yes.
        reject_on: The event of a no, with the cancel reason it leads to.
        timeout: How long the request stays open.
        on_timeout: ``reject`` (then ``timeout_event`` is emitted, with ``timeout_reason``)
            or ``escalate`` (the saga needs attention and keeps waiting).
        waiting_status: The saga's status while it waits.
        answer: Builds a person's answer, ``answer(approve, by, reason)``: the ``approve_on``
            event for a yes, the ``reject_on`` one for a no (a no has a reason). What the API
            publishes for ``POST /sagas/{type}/{key}/approve|reject``; without it the task is
            answered only by publishing its events some other way.
    """

    name: str
    after: Sequence[str]
    when: Condition
    request: Render
    auto: Render
    approve_on: On
    reject_on: Fails
    timeout: Knob[timedelta] | timedelta
    on_timeout: Knob[str] | str
    timeout_event: Render
    timeout_reason: str
    waiting_status: str = "awaiting_approval"
    answer: Answer | None = None


Answer: TypeAlias = Callable[[bool, str, str | None], Event]
"""``answer(approve, by, reason)``: a person's yes or no to a :class:`HumanTask` as its event."""


Node: TypeAlias = Step | HumanTask


@dataclass(frozen=True)
class SagaDefinition:
    """One version of one saga type. Checked when created; see the module docs.

    Attributes:
        saga_type: The saga type (``order``, ``return``).
        version: Recorded when a saga starts; it finishes on it.
        key: What the saga's key is called (``order_id``): the Kafka key of every message of
            one saga, given by whoever publishes the start event.
        start: The event that starts a saga.
        nodes: Steps and human tasks; order is the drawing order, ``after`` the flow.
        endings: What it emits at the end.
        reasons: Every cancel reason it can end with.
        start_status: Its status before any step succeeded.
        catalog: The event types it may name (checked).
        emits: What its endings and human tasks build (with the compensating commands, what
            the coordinator writes: its topics and, later, its ACLs).
    """

    saga_type: str
    version: int
    key: str
    start: On
    nodes: Sequence[Node]
    endings: Endings
    reasons: Sequence[str]
    catalog: Mapping[str, type[Event]]
    start_status: str = "started"
    emits: Sequence[type[Event]] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise InvalidDefinition(
                f"saga definition {self.saga_type} v{self.version}: " + "; ".join(problems)
            )

    # Derived once per definition (it is frozen): the engine asks these for every message.
    @cached_property
    def steps(self) -> tuple[Step, ...]:
        return tuple(n for n in self.nodes if isinstance(n, Step))

    @cached_property
    def tasks(self) -> tuple[HumanTask, ...]:
        return tuple(n for n in self.nodes if isinstance(n, HumanTask))

    @cached_property
    def _by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.saga_type} v{self.version} has no step {name!r}") from None

    def names(self, event: Event) -> bool:
        """Whether ``event`` is one this saga reacts to (its start, a step's, a task's)."""
        named = {m.event_type for node in self.nodes for _, m in _events(self, node)}
        return self.start.matches(event) or event.event_type in named

    def acknowledges(self, event: Event) -> bool:
        """Whether ``event`` acknowledges one of this saga's compensating commands."""
        acks = {c.acknowledged_by for s in self.steps if (c := s.compensation) is not None}
        return any(a is not None and a.event_type == event.event_type for a in acks)

    def later(self, name: str) -> frozenset[str]:
        """The steps and tasks that run after ``name``, directly or not."""
        return self._later[name]

    @cached_property
    def _later(self) -> dict[str, frozenset[str]]:
        later = {}
        for node in self.nodes:
            found: set[str] = set()
            frontier = {node.name}
            while frontier:
                frontier = {n.name for n in self.nodes if set(n.after) & frontier} - found
                found |= frontier
            later[node.name] = frozenset(found)
        return later

    def compensation(self, step: str) -> Compensation:
        """How step ``step`` is undone (it must have a compensation)."""
        node = self.node(step)
        if not isinstance(node, Step) or node.compensation is None:
            raise KeyError(f"{self.saga_type} v{self.version}: step {step!r} is not compensated")
        return node.compensation

    def compensated_by(self, command: str) -> str:
        """The step whose compensating command is ``command`` (an event type)."""
        for node in self.steps:
            if node.compensation is not None and node.compensation.command.event_type == command:
                return node.name
        raise KeyError(f"{self.saga_type} v{self.version}: no step is undone by {command}")

    def knobs(self) -> dict[str, Knob[Any]]:
        """Every knob the definition uses, by name."""
        return self._knobs

    @cached_property
    def _knobs(self) -> dict[str, Knob[Any]]:
        return {k.name: k for k in _knobs(self)}

    def value(self, tunable: Knob[T] | T) -> T:
        """A knob's value in this definition (its override, else its default), or the value."""
        if isinstance(tunable, Knob):
            value: T = self.overrides.get(tunable.name, tunable.default)
            return value
        return tunable

    def knob_values(self) -> Mapping[str, Any]:
        """Every knob's value in this definition, by name (read-only)."""
        return self._knob_values

    @cached_property
    def _knob_values(self) -> Mapping[str, Any]:
        return MappingProxyType({name: self.value(knob) for name, knob in self.knobs().items()})

    def with_knobs(self, overrides: Mapping[str, Any]) -> SagaDefinition:
        """This version with some knobs set (checked again); unknown names are an error."""
        unknown = sorted(set(overrides) - set(self.knobs()))
        if unknown:
            raise InvalidDefinition(
                f"saga definition {self.saga_type} v{self.version}: no knobs {unknown}"
            )
        return dataclasses.replace(self, overrides={**self.overrides, **overrides})

    def compensation_order(self, succeeded: Sequence[str]) -> list[Step]:
        """The steps to undo, newest first: those of ``succeeded`` that have a compensation,
        in the reverse of the flow."""
        flow = [s for s in self.steps if s.compensation is not None and s.name in succeeded]
        return list(reversed(flow))


# --------------------------------------------------------------------------- checks


def _events(definition: SagaDefinition, node: Node) -> Iterator[tuple[str, type[Event]]]:
    """(what, event model) of every event ``node`` names."""
    if isinstance(node, Step):
        if node.triggered_by is not None:
            yield "trigger", node.triggered_by.event
        if node.started_on is not None:
            yield "started signal", node.started_on.event
        for signal in node.succeeded_on:
            yield "success event", signal.event
        for failure in node.fails:
            if failure.on is not None:
                yield "failure event", failure.on.event
        if node.compensation is not None:
            yield "compensating command", node.compensation.command
            if node.compensation.acknowledged_by is not None:
                yield "acknowledgement", node.compensation.acknowledged_by
    else:
        yield "approval event", node.approve_on.event
        if node.reject_on.on is not None:
            yield "rejection event", node.reject_on.on.event


def _problems(d: SagaDefinition) -> Iterator[str]:
    if not d.saga_type or not d.saga_type.replace("_", "").isalnum():
        yield f"type {d.saga_type!r} must be a word"
    if d.version < 1:
        yield f"version must be >= 1, not {d.version}"
    if d.catalog.get(d.start.event_type) is not d.start.event:
        yield f"start event {d.start.event_type} is not in the catalog"
    if not d.key.isidentifier():
        yield f"key {d.key!r} must be a name (it names the messages' Kafka key)"
    names = [n.name for n in d.nodes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield f"step {name!r} is defined twice"
    if not d.nodes:
        yield "a saga needs at least one step"
    for node in d.nodes:
        yield from (f"step {node.name!r}: {p}" for p in _node_problems(d, node, set(names)))
    for model in d.emits:
        if d.catalog.get(getattr(model, "event_type", "")) is not model:
            yield f"emitted event {getattr(model, 'event_type', model)!r} is not in the catalog"
    yield from _cycle(d)


def _node_problems(d: SagaDefinition, node: Node, names: set[str]) -> Iterator[str]:
    for what, model in _events(d, node):
        if d.catalog.get(getattr(model, "event_type", "")) is not model:
            yield f"{what} {getattr(model, 'event_type', model)!r} is not in the catalog"
    for before in node.after:
        if before not in names:
            yield f"runs after unknown step {before!r}"
        elif before == node.name:
            yield "runs after itself"
    if isinstance(node, HumanTask):
        if node.reject_on.reason not in d.reasons or node.timeout_reason not in d.reasons:
            yield "a rejection reason is not among the saga's reasons"
        if d.value(node.on_timeout) not in ("reject", "escalate"):
            yield f"timeout action {d.value(node.on_timeout)!r} is neither reject nor escalate"
        if d.value(node.timeout) <= timedelta(0):
            yield "its timeout must be positive"
        return
    if not node.succeeded_on:
        yield "no event means it succeeded"
    if node.triggered_by is None and node.after:
        yield "no event can start it: it runs after other steps but names no trigger"
    for failure in node.fails:
        # A non-critical step's failure only leaves a note: its reason is that note's words.
        if node.critical and failure.reason not in d.reasons:
            yield f"failure reason {failure.reason!r} is not among the saga's reasons"
    if node.deadlines.reason is not None and node.deadlines.reason not in d.reasons:
        yield f"deadline reason {node.deadlines.reason!r} is not among the saga's reasons"
    for kind in ("pick_up", "answer"):
        limit = getattr(node.deadlines, kind)
        if limit is not None and d.value(limit) <= timedelta(0):
            yield f"its {kind} deadline must be positive"
    limited = node.deadlines.pick_up is not None or node.deadlines.answer is not None
    if node.critical and limited and node.deadlines.reason is None:
        yield "a critical step with a deadline needs the reason its expiry cancels with"
    if node.deadlines.pick_up is not None and node.started_on is None:
        yield "a pick-up deadline needs a started signal (started_on)"
    if node.participant is not None and not node.participant.replace("-", "").isalnum():
        yield f"participant {node.participant!r} must name a process"
    if node.compensation is not None:
        if node.compensation.acknowledged_by is None:
            yield f"compensation {node.compensation.command.event_type} has no acknowledgement"
        if d.value(node.compensation.max_attempts) < 1:
            yield "its compensation needs at least one attempt"
        if d.value(node.compensation.ack_timeout) <= timedelta(0):
            yield "its compensation's ack timeout must be positive"


def _cycle(d: SagaDefinition) -> Iterator[str]:
    after = {n.name: list(n.after) for n in d.nodes}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for before in after.get(name, ()):
            if state.get(before) == 1:
                return [*path[path.index(before) :], before] if before in path else [name, before]
            if before in after and before not in state:
                found = visit(before, [*path, before])
                if found:
                    return found
        state[name] = 2
        return None

    for name in after:
        if name not in state:
            found = visit(name, [name])
            if found:
                yield "steps form a cycle: " + " -> ".join(reversed(found))
                return


def _knobs(d: SagaDefinition) -> Iterator[Knob[Any]]:
    def walk(value: Any) -> Iterator[Knob[Any]]:
        if isinstance(value, Knob):
            yield value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                yield from walk(getattr(value, f.name))
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item)

    for node in d.nodes:
        yield from walk(node)
