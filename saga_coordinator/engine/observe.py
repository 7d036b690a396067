"""The facts an incoming event or a due timer establishes for a generic saga. No I/O here.

An event may tell several things at once (``order.approved`` decides the approval task and
sets payment going; ``shipment.scheduled`` is shipping's success and CRM's trigger): every
role it plays in the definition is looked at. What the saga already knows is not recorded
twice, so a repeated or redelivered event establishes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from events.model import Event, Message
from saga_coordinator.engine import facts as f
from saga_coordinator.engine.state import SagaState
from saga_coordinator.engine.timing import TimerFired, desired_timers
from saga_coordinator.errors import SagaError
from sagas.definition import HumanTask, On, SagaDefinition, Step
from sagas.emit import Emit


def captured(signal: On, event: Event) -> dict[str, Any]:
    """What ``signal`` takes from ``event`` into the saga's data (JSON-safe values)."""
    values = event.model_dump(mode="json")
    return {name: values[field] for name, field in signal.capture.items()}


def observe(
    state: SagaState, message: Message[Event], d: SagaDefinition, now: datetime, producer: str
) -> list[f.Fact]:
    """Facts ``message`` establishes; [] when it tells nothing new."""
    event, eid = message.event, message.envelope.event_id
    own = message.envelope.producer == producer
    found: list[f.Fact] = []
    if d.start.matches(event) and not state.start_seen:
        found.append(f.Captured(at=now, event_id=eid, captured=captured(d.start, event)))
    for node in d.nodes:
        if isinstance(node, HumanTask):
            found.extend(_task(state, node, event, eid, now, own))
        else:
            found.extend(_step(state, node, event, eid, now))
            found.extend(_acknowledgement(state, node, event, eid, now))
    found.extend(_trigger(state, message, d, now))
    return found


def _trigger(
    state: SagaState, message: Message[Event], d: SagaDefinition, now: datetime
) -> Iterator[f.Fact]:
    """Where the trigger of steps with a named participant was read (the coordinator's own
    echo included: it is how the coordinator learns where what it sent landed)."""
    if message.position is None or not state.active:
        return
    steps = tuple(
        s.name
        for s in d.steps
        if s.participant is not None
        and (s.triggered_by or d.start).matches(message.event)
        and state.step(s.name).trigger is None
        and state.step(s.name).outcome is None
    )
    if steps:
        topic, partition, offset = message.position
        eid = message.envelope.event_id
        yield f.TriggerSeen(
            at=now, event_id=eid, steps=steps, topic=topic, partition=partition, offset=offset
        )


def _ignored(event: Event, why: str, now: datetime, eid: Any) -> f.Fact:
    return f.Ignored(at=now, event_id=eid, event_type=event.event_type, why=why)


def _step(state: SagaState, step: Step, event: Event, eid: Any, now: datetime) -> Iterator[f.Fact]:
    progress = state.step(step.name)
    late = f"saga is {'compensating' if state.cancel_reason else 'ended'}"
    taken_up = step.started_on is not None and step.started_on.matches(event)
    if taken_up and progress.started_at is None and progress.outcome is None and state.active:
        yield f.StepStarted(at=now, event_id=eid, step=step.name)
    success = next((s for s in step.succeeded_on if s.matches(event)), None)
    if success is not None:
        if progress.outcome == "succeeded":
            return
        # A success with a compensation is recorded even late: what succeeded after the saga
        # gave up must be undone. One without is only noted.
        if not state.active and step.compensation is None:
            yield _ignored(event, late, now, eid)
            return
        yield f.StepSucceeded(
            at=now, event_id=eid, step=step.name, captured=captured(success, event)
        )
        return
    failure = next((x for x in step.fails if x.on is not None and x.on.matches(event)), None)
    if failure is None or failure.on is None or progress.outcome == "failed":
        return
    if progress.outcome == "succeeded":
        yield _ignored(event, f"{step.name} already succeeded", now, eid)
    elif not state.active:
        yield _ignored(event, late, now, eid)
    elif progress.outcome is None:
        reason = failure.reason if step.critical else None
        detail = failure.on.describe(event)
        yield f.StepFailed(at=now, event_id=eid, step=step.name, detail=detail, reason=reason)


def _acknowledgement(
    state: SagaState, step: Step, event: Event, eid: Any, now: datetime
) -> Iterator[f.Fact]:
    comp = step.compensation
    if comp is None or comp.acknowledged_by is None:
        return
    if event.event_type != comp.acknowledged_by.event_type:
        return
    undo = state.undo(step.name)
    if undo is not None and undo.acknowledged:
        return
    if undo is None or undo.attempt == 0:
        yield _ignored(event, f"no {comp.command.event_type} was sent", now, eid)
        return
    yield f.UndoAcknowledged(at=now, event_id=eid, step=step.name)


def _task(
    state: SagaState, task: HumanTask, event: Event, eid: Any, now: datetime, own: bool
) -> Iterator[f.Fact]:
    approve = task.approve_on.matches(event)
    reject = task.reject_on.on is not None and task.reject_on.on.matches(event)
    if not (approve or reject):
        return
    decided = state.task(task.name).outcome
    if decided is not None:
        if not own:  # the coordinator's own decision comes back: its echo tells nothing
            yield _ignored(event, f"{task.name} already decided: {decided}", now, eid)
        return
    if not state.active:
        yield _ignored(event, "saga is not running", now, eid)
        return
    if approve:
        data = captured(task.approve_on, event)
        yield f.TaskDecided(at=now, event_id=eid, task=task.name, outcome="approved", captured=data)
        return
    assert task.reject_on.on is not None
    yield f.TaskDecided(
        at=now,
        event_id=eid,
        task=task.name,
        outcome="rejected",
        detail=task.reject_on.on.describe(event),
        captured=captured(task.reject_on.on, event),
    )


def on_timer(state: SagaState, timer: TimerFired, d: SagaDefinition, now: datetime) -> list[f.Fact]:
    """Facts a due timer establishes; [] if the state no longer wants that timer now."""
    due_at = desired_timers(state, d).get(timer.name)
    if due_at is None or due_at > now:
        return []
    kind, _, target = timer.name.partition(":")
    if kind == "ack":
        name = d.compensated_by(target)
        undo = state.undo(name)
        if undo is None:
            raise SagaError(f"saga {state.key}: {timer.name} fired with no {target} sent")
        if undo.attempt < d.value(d.compensation(name).max_attempts):
            return [f.UndoRequested(at=now, step=name, attempt=undo.attempt + 1)]
        return [f.UndoExhausted(at=now, step=name, attempts=undo.attempt)]
    node = d.node(target)
    if isinstance(node, HumanTask):
        if d.value(node.on_timeout) == "escalate":
            return [f.TaskEscalated(at=now, task=node.name)]
        wait: timedelta = d.value(node.timeout)
        detail = f"no {node.name} within {wait.total_seconds():g}s"
        rejection = node.timeout_event(Emit(state.data, now, d.knob_values()))
        kept = captured(node.reject_on.on, rejection) if node.reject_on.on else {}
        return [
            f.TaskDecided(at=now, task=node.name, outcome="timed_out", detail=detail, captured=kept)
        ]
    if kind not in ("deadline", "pickup"):
        raise SagaError(f"saga {state.key}: unexpected timer {timer.name!r}")
    deadline = "answer" if kind == "deadline" else "pick_up"
    limit = node.deadlines.answer if deadline == "answer" else node.deadlines.pick_up
    assert limit is not None
    seconds = d.value(limit).total_seconds()
    what = "no answer" if deadline == "answer" else "not taken up"
    detail = f"{what} within {seconds:g}s"
    if node.critical:  # the cancel detail names the step; a note says it itself
        detail = f"{node.name} deadline: {detail}"
    if node.deadlines.explain:
        detail = f"{detail}; {node.deadlines.explain}"
    reason = node.deadlines.reason if node.critical else None
    return [f.StepFailed(at=now, step=node.name, detail=detail, reason=reason, deadline=deadline)]
