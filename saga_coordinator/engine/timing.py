"""The durable timers a generic saga's state calls for, and the operations that keep them.
No I/O here.

Names are those of the order saga's own core (``deadline:<step>``, ``pickup:<step>``,
``ack:<command>``), so timer rows of running sagas keep their meaning. A step's deadlines run
from when its turn came (:meth:`~saga_coordinator.engine.state.SagaState.triggered_at`); its
answer deadline runs from its started signal when it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from saga_coordinator.engine.state import SagaState
from sagas.definition import HumanTask, SagaDefinition, Step


@dataclass(frozen=True, slots=True)
class TimerFired:
    """Input to :func:`decide`: a durable timer of the saga came due."""

    order_id: str
    name: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Create the saga's timer ``name`` or move it to ``due_at``."""

    name: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Delete the saga's timer ``name`` (no error if absent)."""

    name: str


TimerOp: TypeAlias = ScheduleTimer | CancelTimer


def deadline_timer(step: str) -> str:
    return f"deadline:{step}"


def ack_timer(command: str) -> str:
    return f"ack:{command}"


def pickup_timer(step: str) -> str:
    return f"pickup:{step}"


def desired_timers(state: SagaState, d: SagaDefinition) -> dict[str, datetime]:
    """The timers the state calls for, by name, with their due time."""
    timers: dict[str, datetime] = {}
    if state.active:
        succeeded = {node.name for node in d.nodes if state.succeeded(node.name)}
        for node in d.nodes:
            if succeeded & d.later(node.name):
                continue  # a later step succeeded: this one's answer is moot
            if isinstance(node, HumanTask):
                task = state.task(node.name)
                if task.expires_at is not None and task.outcome is None and not task.escalated:
                    timers[deadline_timer(node.name)] = task.expires_at
            else:
                timers.update(_step_timers(state, d, node))
    for undo in state.undos:
        if undo.in_flight and not undo.exhausted and undo.requested_at is not None:
            comp = d.compensation(undo.step)
            wait: timedelta = d.value(comp.ack_timeout)
            timers[ack_timer(comp.command.event_type)] = undo.requested_at + wait
    return timers


def _step_timers(state: SagaState, d: SagaDefinition, step: Step) -> dict[str, datetime]:
    progress = state.step(step.name)
    triggered = state.triggered_at(d, step)
    if progress.outcome is not None or triggered is None:
        return {}
    timers: dict[str, datetime] = {}
    limits = step.deadlines
    if limits.pick_up is not None and progress.started_at is None:
        timers[pickup_timer(step.name)] = triggered + d.value(limits.pick_up)
    if limits.answer is not None:
        if step.started_on is None:
            timers[deadline_timer(step.name)] = triggered + d.value(limits.answer)
        elif progress.started_at is not None:
            timers[deadline_timer(step.name)] = progress.started_at + d.value(limits.answer)
    return timers


def timer_ops(
    before: dict[str, datetime], after: dict[str, datetime], fired: TimerFired | None
) -> tuple[TimerOp, ...]:
    ops: dict[str, TimerOp] = {}
    for name, due_at in after.items():
        if before.get(name) != due_at:
            ops[name] = ScheduleTimer(name, due_at)
    for name in before:
        if name not in after:
            ops[name] = CancelTimer(name)
    if fired is not None and fired.name not in ops:
        # The fired row itself must end up right even if it was stale (not in `before`) or
        # out of date: gone when no longer wanted, else moved to when it is wanted.
        wanted = after.get(fired.name)
        ops[fired.name] = (
            CancelTimer(fired.name) if wanted is None else ScheduleTimer(fired.name, wanted)
        )
    return tuple(ops.values())


@dataclass(frozen=True, slots=True)
class Pickup:
    """A participant that must get to a trigger before its time runs.

    Attributes:
        participant: The process (its consumer group is named after it).
        trigger: The event type it reacts to (its topic is watched).
        since: When the coordinator sent or saw the trigger.
        limit: How long the participant has once it got to the trigger.
        read_at: Where the coordinator read the trigger (topic, partition, offset): the
            participant got to it once its group consumed every record before it.
        readable: Whether the coordinator reads the trigger (a step's trigger, not a command
            it sends): until it has, when the participant got to it is not known.
    """

    participant: str
    trigger: str
    since: datetime
    limit: timedelta
    read_at: tuple[str, int, int] | None = None
    readable: bool = False


@dataclass(frozen=True, slots=True)
class Watch:
    """What a due timer waits on, for the live timer loop to judge it fairly
    (:mod:`saga_coordinator.fairness`). Pure data, read from the state and the definition.

    Attributes:
        answers: Event types that could answer the timer; it must not fire while the
            coordinator has unread messages of their topics (any partition).
        pickup: The participant whose own time the timer measures; None when the state's due
            time is already its own (a started signal, a person, no participant named).
    """

    answers: tuple[str, ...]
    pickup: Pickup | None = None


def watch(state: SagaState, d: SagaDefinition, timer: str) -> Watch | None:
    """What timer ``timer`` of a saga in ``state`` waits on; None for a timer the state no
    longer calls for."""
    kind, _, target = timer.partition(":")
    if kind == "ack":
        try:
            step = d.node(d.compensated_by(target))
        except KeyError:
            return None
        undo = state.undo(step.name)
        comp = d.compensation(step.name)
        if not isinstance(step, Step) or undo is None or comp.acknowledged_by is None:
            return None
        answers: tuple[str, ...] = (comp.acknowledged_by.event_type,)
        if step.participant is None or undo.requested_at is None:
            return Watch(answers)
        limit: timedelta = d.value(comp.ack_timeout)
        return Watch(answers, Pickup(step.participant, target, undo.requested_at, limit))
    try:
        node = d.node(target)
    except KeyError:
        return None
    if isinstance(node, HumanTask):
        reject = (node.reject_on.on.event_type,) if node.reject_on.on is not None else ()
        return Watch((node.approve_on.event_type, *reject))
    answers = tuple(
        dict.fromkeys(
            [s.event_type for s in node.succeeded_on]
            + [x.on.event_type for x in node.fails if x.on is not None]
            + ([node.started_on.event_type] if node.started_on is not None else [])
        )
    )
    triggered = state.triggered_at(d, node)
    explicit = node.started_on is not None or kind != "deadline"
    if explicit or node.participant is None or node.deadlines.answer is None or triggered is None:
        return Watch(answers)
    trigger = (node.triggered_by or d.start).event_type
    limit = d.value(node.deadlines.answer)
    read_at = state.step(node.name).trigger
    return Watch(answers, Pickup(node.participant, trigger, triggered, limit, read_at, True))
