"""What a generic saga decides, and the events its decisions render to. No I/O here.

:func:`decide` takes the state, one input (a message or a due timer), the saga's pinned
definition and the time; every input first becomes facts (:mod:`.observe`), then the state is
asked "what do you call for?" until nothing more: ask a person or decide by policy, start
undoing newest first, send the next compensation, complete, cancel. Decisions depend on the
folded state, never on which event just arrived, so the order events arrive in and their
redelivery change nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from events.model import Event, Message
from saga_coordinator.engine import facts as f
from saga_coordinator.engine.observe import captured, observe, on_timer
from saga_coordinator.engine.state import SagaState, evolve
from saga_coordinator.engine.timing import (
    CancelTimer,
    TimerFired,
    TimerOp,
    desired_timers,
    timer_ops,
)
from saga_coordinator.errors import SagaError
from sagas.definition import HumanTask, SagaDefinition
from sagas.emit import Emit

MAX_DECISIONS_PER_INPUT = 64
"""Guard against a decision rule that never settles (a bug, not a runtime condition)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What one input leads to. ``state`` is the state after ``facts``."""

    state: SagaState
    facts: tuple[f.Fact, ...] = ()
    events: tuple[Event, ...] = ()
    timers: tuple[TimerOp, ...] = ()


def decide(
    state: SagaState,
    incoming: Message[Event] | TimerFired,
    d: SagaDefinition,
    now: datetime,
    producer: str,
) -> Decision:
    """What ``incoming`` leads to for a saga in ``state`` on its pinned definition ``d``
    (the current one for a new saga). ``producer`` is the coordinator's name in envelopes."""
    if state.definition_version not in (None, d.version):
        raise SagaError(f"saga {state.key} runs on v{state.definition_version}, not v{d.version}")
    event_id: uuid.UUID | None = None
    if isinstance(incoming, TimerFired):
        if not state.started:
            return Decision(state, timers=(CancelTimer(incoming.name),))
        found = on_timer(state, incoming, d, now)
    else:
        event_id = incoming.envelope.event_id
        if event_id in state.seen:
            return Decision(state)  # redelivered: already folded
        found = _start(state, incoming, d, now)
        base = evolve(state, found[0]) if found else state
        if found or state.started:
            found += observe(base, incoming, d, now, producer)
        if not found:
            return Decision(state)
    new, events = state, []
    for fact in found:
        new = evolve(new, fact)
        events.extend(render(fact, new, d))
    for _ in range(MAX_DECISIONS_PER_INPUT):
        decided = next_decision(new, d, now, event_id)
        if decided is None:
            break
        found.append(decided)
        new = evolve(new, decided)
        events.extend(render(decided, new, d))
    else:
        raise SagaError(f"saga {state.key}: decisions did not settle")
    fired = incoming if isinstance(incoming, TimerFired) else None
    timers = timer_ops(desired_timers(state, d), desired_timers(new, d), fired)
    return Decision(new, tuple(found), tuple(events), timers)


def _start(
    state: SagaState, message: Message[Event], d: SagaDefinition, now: datetime
) -> list[f.Fact]:
    """The saga's first fact, when it has not started: on its start event, or on another of
    its events that came first (an acknowledgement of a compensation starts nothing)."""
    if state.started or not d.names(message.event) or d.acknowledges(message.event):
        return []
    start_seen = d.start.matches(message.event)
    return [
        f.Started(
            at=now,
            event_id=message.envelope.event_id,
            saga_type=d.saga_type,
            definition_version=d.version,
            correlation_id=message.envelope.correlation_id,
            captured=captured(d.start, message.event) if start_seen else {},
            start_seen=start_seen,
        )
    ]


def _failure(state: SagaState, d: SagaDefinition) -> tuple[str, str | None] | None:
    """Why an active saga must be undone, if it must: the first critical failure in flow
    order (a step's failure event or deadline, a task's rejection or timeout)."""
    for node in d.nodes:
        if isinstance(node, HumanTask):
            task = state.task(node.name)
            if task.outcome == "rejected":
                return node.reject_on.reason, task.detail
            if task.outcome == "timed_out":
                return node.timeout_reason, task.detail
            continue
        progress = state.step(node.name)
        if node.critical and progress.reason is not None:
            return progress.reason, progress.detail
    return None


# Long: the saga's rules in priority order; splitting them would hide that order.
def next_decision(
    state: SagaState, d: SagaDefinition, now: datetime, event_id: uuid.UUID | None
) -> f.Fact | None:
    """The one decision ``state`` calls for next, or None when it calls for nothing."""
    if not state.started:
        return None
    if state.cancel_reason is not None:
        # A success that arrived after the saga gave up is undone at once, beside whatever is
        # in flight: money and stock must not stay held until the sequence reaches it.
        for step in reversed(d.steps):
            if step.compensation and state.succeeded(step.name) and state.undo(step.name) is None:
                late = f"late {step.succeeded_on[0].event_type} ({state.cancel_reason})"
                return f.UndoAdded(at=now, event_id=event_id, step=step.name, reason=late)
        if state.cancelled_at is not None or any(u.in_flight for u in state.undos):
            return None
        planned = next((u for u in state.undos if u.attempt == 0), None)
        if planned is not None:
            return f.UndoRequested(at=now, event_id=event_id, step=planned.step, attempt=1)
        return f.Cancelled(
            at=now, event_id=event_id, reason=state.cancel_reason, detail=state.cancel_detail
        )
    if state.completed_at is not None:
        return None
    failure = _failure(state, d)
    if failure is not None:
        succeeded = [s.name for s in d.steps if state.succeeded(s.name)]
        plan = tuple(s.name for s in d.compensation_order(succeeded))
        reason, detail = failure
        return f.UndoStarted(at=now, event_id=event_id, reason=reason, detail=detail, plan=plan)
    for task in d.tasks:
        progress = state.task(task.name)
        if progress.outcome is not None or progress.requested_at is not None:
            continue
        if not state.start_seen:
            continue  # its condition reads what the start event says
        if state.triggered_at(d, task) is None:
            continue
        if task.when.test(state.data, d.knob_values()):
            wait: timedelta = d.value(task.timeout)
            return f.TaskRequested(at=now, event_id=event_id, task=task.name, expires_at=now + wait)
        # What the policy's decision says is kept as a person's would be (e.g. approved_by).
        auto = task.auto(Emit(state.data, now, d.knob_values()))
        return f.TaskDecided(
            at=now,
            event_id=event_id,
            task=task.name,
            outcome="auto",
            captured=captured(task.approve_on, auto),
        )
    if _complete(state, d):
        return f.Completed(at=now, event_id=event_id, notes=_notes(state, d))
    return None


def _complete(state: SagaState, d: SagaDefinition) -> bool:
    for node in d.nodes:
        if isinstance(node, HumanTask):
            if not state.task(node.name).approved:
                return False
        elif (node.critical and not state.succeeded(node.name)) or (
            not node.critical and state.step(node.name).outcome is None
        ):
            return False
    return True


def _notes(state: SagaState, d: SagaDefinition) -> tuple[str, ...]:
    notes = []
    for step in d.steps:
        progress = state.step(step.name)
        if step.critical or progress.outcome in (None, "succeeded"):
            continue
        detail = progress.detail or ""
        kind = "failed" if progress.outcome == "failed" else "timed_out"
        notes.append(step.note(kind, detail) if step.note else f"{step.name} {kind}: {detail}")
    return tuple(notes)


def render(fact: f.Fact, state: SagaState, d: SagaDefinition) -> list[Event]:
    """The event or command a decision fact stands for ([] for observations)."""
    if not isinstance(fact, _RENDERED):
        return []
    e = Emit(state.data, fact.at, d.knob_values())
    match fact:
        case f.TaskRequested():
            return [_task(d, fact.task).request(e)]
        case f.TaskDecided(outcome="auto"):
            return [_task(d, fact.task).auto(e)]
        case f.TaskDecided(outcome="timed_out"):
            return [_task(d, fact.task).timeout_event(e)]
        case f.TaskEscalated():
            task = state.task(fact.task)
            why = (
                f"{fact.task} requested at {_iso(task.requested_at)} expired at "
                f"{_iso(task.expires_at)}; still waiting for a decision"
            )
            return [d.endings.needs_attention(_with(e, step=fact.task, reason=why))]
        case f.UndoAdded():
            return [d.compensation(fact.step).render(_with(e, reason=fact.reason, attempt=1))]
        case f.UndoRequested():
            undo = state.undo(fact.step)
            assert undo is not None
            comp = d.compensation(fact.step)
            return [comp.render(_with(e, reason=undo.reason, attempt=fact.attempt))]
        case f.UndoExhausted():
            command = d.compensation(fact.step).command.event_type
            why = (
                f"{command} not acknowledged after {fact.attempts} attempt(s) "
                f"({state.cancel_reason}); compensation is blocked"
            )
            return [d.endings.needs_attention(_with(e, step=command, reason=why))]
        case f.Completed():
            return [d.endings.completed(_with(e, notes=fact.notes))]
        case f.Cancelled():
            return [d.endings.cancelled(_with(e, reason=fact.reason, detail=fact.detail))]
    return []


_RENDERED = (
    f.TaskRequested,
    f.TaskDecided,
    f.TaskEscalated,
    f.UndoAdded,
    f.UndoRequested,
    f.UndoExhausted,
    f.Completed,
    f.Cancelled,
)
"""The decision facts that stand for an event or command."""


def _task(d: SagaDefinition, name: str) -> HumanTask:
    node = d.node(name)
    assert isinstance(node, HumanTask)
    return node


def _with(e: Emit, **changes: Any) -> Emit:
    return dataclasses.replace(e, **changes)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "?"
