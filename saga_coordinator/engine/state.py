"""A generic saga's state: a fold of its facts. No I/O here.

The state knows steps and tasks by name only; what they mean (which step comes after which,
what is critical, what a milestone is called) is the definition's, so the questions that need
it (:meth:`SagaState.status`, :meth:`SagaState.current`) take the definition.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal, cast

from saga_coordinator.engine import facts as f
from saga_coordinator.errors import SagaError
from sagas.definition import HumanTask, SagaDefinition, Step

StepOutcome = Literal["succeeded", "failed", "timed_out"]


@dataclass(frozen=True, slots=True)
class StepState:
    """How far one step got."""

    started_at: datetime | None = None
    outcome: StepOutcome | None = None
    finished_at: datetime | None = None
    detail: str | None = None
    reason: str | None = None
    deadline: Literal["pick_up", "answer"] | None = None
    trigger: tuple[str, int, int] | None = None
    """Where the coordinator read the step's trigger: (topic, partition, offset)."""


@dataclass(frozen=True, slots=True)
class TaskState:
    """A human task: asked (``requested_at``), decided (``outcome``), escalated."""

    requested_at: datetime | None = None
    expires_at: datetime | None = None
    outcome: Literal["approved", "rejected", "auto", "timed_out"] | None = None
    decided_at: datetime | None = None
    detail: str | None = None
    escalated: bool = False

    @property
    def approved(self) -> bool:
        return self.outcome in ("approved", "auto")


NO_STEP = StepState()
NO_TASK = TaskState()


@dataclass(frozen=True, slots=True)
class Undo:
    """One step's compensation and how far it got; ``attempt`` 0: planned, not sent yet."""

    step: str
    reason: str
    attempt: int = 0
    requested_at: datetime | None = None
    acknowledged: bool = False
    exhausted: bool = False

    @property
    def in_flight(self) -> bool:
        """Sent and not acknowledged (exhausted ones too: they still block the rest)."""
        return self.attempt > 0 and not self.acknowledged


@dataclass(frozen=True, slots=True)
class SagaState:
    """Everything a saga knows; built only by :func:`evolve`. ``version``: facts folded."""

    key: str
    saga_type: str | None = None
    version: int = 0
    definition_version: int | None = None
    correlation_id: str | None = None
    last_event_id: uuid.UUID | None = None
    seen: frozenset[uuid.UUID] = frozenset()
    started_at: datetime | None = None
    """When the start event was recorded (its steps' deadlines run from there)."""
    data: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepState] = field(default_factory=dict)
    tasks: dict[str, TaskState] = field(default_factory=dict)
    cancel_reason: str | None = None
    cancel_detail: str | None = None
    undos: tuple[Undo, ...] = ()
    completed_at: datetime | None = None
    notes: tuple[str, ...] = ()
    cancelled_at: datetime | None = None
    ignored: int = 0

    @property
    def started(self) -> bool:
        return self.definition_version is not None

    @property
    def start_seen(self) -> bool:
        """Whether the start event (and so the saga's own data) has been recorded."""
        return self.started_at is not None

    @property
    def active(self) -> bool:
        """Moving forward: started, and neither compensating nor ended."""
        return self.started and self.cancel_reason is None and self.completed_at is None

    @property
    def needs_attention(self) -> bool:
        """A compensation ran out of attempts, or an escalated task still waits."""
        stuck = any(u.exhausted and not u.acknowledged for u in self.undos)
        waiting = self.active and any(
            t.escalated and t.outcome is None for t in self.tasks.values()
        )
        return stuck or waiting

    def step(self, name: str) -> StepState:
        return self.steps.get(name, NO_STEP)

    def task(self, name: str) -> TaskState:
        return self.tasks.get(name, NO_TASK)

    def undo(self, step: str) -> Undo | None:
        return next((u for u in self.undos if u.step == step), None)

    def succeeded(self, name: str) -> bool:
        """A step succeeded, or a task was approved."""
        return self.step(name).outcome == "succeeded" or self.task(name).approved

    def done_at(self, name: str) -> datetime | None:
        """When a step succeeded or a task was approved."""
        if self.step(name).outcome == "succeeded":
            return self.step(name).finished_at
        return self.task(name).decided_at if self.task(name).approved else None

    def triggered_at(self, d: SagaDefinition, node: Step | HumanTask) -> datetime | None:
        """When ``node``'s turn came: the saga's start, or when the last step before it was
        done. Deadlines run from here, as they judge the participant's answer."""
        if not node.after:
            return self.started_at
        done = [self.done_at(name) for name in node.after]
        return None if any(at is None for at in done) else max(at for at in done if at)

    def status(self, d: SagaDefinition) -> str:
        """Where the saga is: an ending, ``compensating``, a task's waiting status, the
        milestone of the latest step that succeeded, or the definition's start status."""
        if self.needs_attention:
            return "needs_attention"
        if self.cancelled_at is not None:
            return "cancelled"
        if self.completed_at is not None:
            return "completed"
        if self.cancel_reason is not None:
            return "compensating"
        status = d.start_status
        for node in d.nodes:
            if isinstance(node, HumanTask):
                task = self.task(node.name)
                if task.requested_at is not None and task.outcome is None:
                    return node.waiting_status
            elif node.milestone is not None and self.succeeded(node.name):
                status = node.milestone
        return status

    def current(self, d: SagaDefinition) -> str | None:
        """What the saga waits for: a step or task, a compensating command, or None."""
        if self.cancel_reason is not None:
            pending = [u for u in self.undos if u.in_flight] or [
                u for u in self.undos if u.attempt == 0
            ]
            if not pending:
                return None
            return d.compensation(pending[0].step).command.event_type
        if self.completed_at is not None or not self.started:
            return None
        for node in d.nodes:
            if isinstance(node, HumanTask):
                task = self.task(node.name)
                if task.requested_at is not None and task.outcome is None:
                    return node.name
            elif self.step(node.name).outcome is None:
                return node.name
        return None


# The helpers and the fold read only fields, never methods: :func:`fold` passes a draft.
def _step(state: SagaState, name: str, **changes: Any) -> dict[str, StepState]:
    return {**state.steps, name: dataclasses.replace(state.steps.get(name, NO_STEP), **changes)}


def _task(state: SagaState, name: str, **changes: Any) -> dict[str, TaskState]:
    return {**state.tasks, name: dataclasses.replace(state.tasks.get(name, NO_TASK), **changes)}


def _undo(state: SagaState, step: str, **changes: Any) -> tuple[Undo, ...]:
    return tuple(dataclasses.replace(u, **changes) if u.step == step else u for u in state.undos)


def evolve(state: SagaState, fact: f.Fact) -> SagaState:
    """The state after ``fact``. Pure; the only way a state changes."""
    return dataclasses.replace(state, **_changes(state, fact))


# Long: one case per fact kind; the whole fold reads in one place, as a match.
def _changes(state: SagaState, fact: f.Fact) -> dict[str, Any]:
    """The fields ``fact`` changes (:func:`fold` passes a mutable draft as ``state``)."""
    changes: dict[str, Any] = {}
    match fact:
        case f.Started():
            changes.update(
                saga_type=fact.saga_type,
                definition_version=fact.definition_version,
                correlation_id=fact.correlation_id,
                started_at=fact.at if fact.start_seen else None,
                data={**state.data, **fact.captured},
            )
        case f.Captured():
            changes.update(started_at=fact.at, data={**state.data, **fact.captured})
        case f.StepStarted():
            changes.update(steps=_step(state, fact.step, started_at=fact.at))
        case f.TriggerSeen():
            steps = state.steps
            for name in fact.steps:
                seen = (fact.topic, fact.partition, fact.offset)
                steps = {**steps, name: dataclasses.replace(steps.get(name, NO_STEP), trigger=seen)}
            changes.update(steps=steps)
        case f.StepSucceeded():
            changes.update(
                steps=_step(state, fact.step, outcome="succeeded", finished_at=fact.at),
                data={**state.data, **fact.captured},
            )
        case f.StepFailed():
            outcome = "failed" if fact.deadline is None else "timed_out"
            changes.update(
                steps=_step(
                    state,
                    fact.step,
                    outcome=outcome,
                    finished_at=fact.at,
                    detail=fact.detail,
                    reason=fact.reason,
                    deadline=fact.deadline,
                )
            )
        case f.TaskRequested():
            changes.update(
                tasks=_task(state, fact.task, requested_at=fact.at, expires_at=fact.expires_at)
            )
        case f.TaskDecided():
            changes.update(
                tasks=_task(
                    state, fact.task, outcome=fact.outcome, decided_at=fact.at, detail=fact.detail
                ),
                data={**state.data, **fact.captured},
            )
        case f.TaskEscalated():
            changes.update(tasks=_task(state, fact.task, escalated=True))
        case f.UndoStarted():
            planned = tuple(Undo(step, fact.reason) for step in fact.plan)
            changes.update(
                cancel_reason=fact.reason,
                cancel_detail=fact.detail,
                undos=(*state.undos, *planned),
            )
        case f.UndoAdded():
            added = Undo(fact.step, fact.reason, attempt=1, requested_at=fact.at)
            changes.update(undos=(*state.undos, added))
        case f.UndoRequested():
            changes.update(
                undos=_undo(state, fact.step, attempt=fact.attempt, requested_at=fact.at)
            )
        case f.UndoAcknowledged():
            changes.update(undos=_undo(state, fact.step, acknowledged=True))
        case f.UndoExhausted():
            changes.update(undos=_undo(state, fact.step, exhausted=True))
        case f.Completed():
            changes.update(completed_at=fact.at, notes=fact.notes)
        case f.Cancelled():
            changes.update(cancelled_at=fact.at, cancel_reason=fact.reason)
        case f.Ignored():
            changes.update(ignored=state.ignored + 1)
        case _:
            raise SagaError(f"the engine does not know fact {type(fact).__name__}")
    if fact.event_id is not None:
        changes.update(last_event_id=fact.event_id, seen=state.seen | {fact.event_id})
    changes["version"] = state.version + 1
    return changes


def fold(key: str, stream: Iterable[f.Fact], start: SagaState | None = None) -> SagaState:
    """The state of a saga from its whole stream of facts (or ``start`` and the facts after
    it): the changes of each fact applied to one mutable draft, frozen once (copying the
    state per fact is what the coordinator would otherwise spend its time on)."""
    if start is None:
        draft = SimpleNamespace(**_INITIAL, key=key)
    else:
        draft = SimpleNamespace(**{fld.name: getattr(start, fld.name) for fld in _FIELDS})
    fields = vars(draft)
    for fact in stream:
        fields.update(_changes(cast(SagaState, draft), fact))
    return SagaState(**fields)


_FIELDS = dataclasses.fields(SagaState)

_INITIAL: dict[str, Any] = {
    field.name: getattr(SagaState(""), field.name)
    for field in dataclasses.fields(SagaState)
    if field.name != "key"
}
"""A new saga's fields (the defaults), from which :func:`fold` starts."""
