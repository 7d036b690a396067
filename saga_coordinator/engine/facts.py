"""What a generic saga records: one immutable fact per thing it observed or decided.

Kinds are dotted (``step.succeeded``) so that they never clash with the order saga's own fact
kinds in the same table; a released kind and its fields never change.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from saga_coordinator.errors import SagaError

FACTS: dict[str, type[Fact]] = {}
"""Stored ``kind`` → fact model; filled as the classes below are declared."""


class Fact(BaseModel):
    """Base of every fact: when the coordinator recorded it, and the message it came from
    (``None`` for a timer's), which is how a redelivered message is recognised."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str]
    at: datetime
    event_id: uuid.UUID | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if not isinstance(kind, str) or kind in FACTS:
            raise TypeError(f"fact {cls.__name__} needs a kind of its own")
        FACTS[kind] = cls

    def data(self) -> dict[str, Any]:
        """The fields stored as ``data`` (``at`` and ``event_id`` have columns of their own)."""
        return self.model_dump(mode="json", exclude={"at", "event_id"})


def parse(kind: str, data: Mapping[str, Any], *, at: datetime, event_id: uuid.UUID | None) -> Fact:
    """A stored fact, rebuilt."""
    try:
        model = FACTS[kind]
    except KeyError:
        raise SagaError(f"unknown saga fact kind {kind!r}") from None
    return model.model_validate({**data, "at": at, "event_id": event_id})


class Started(Fact):
    """The first fact: the definition the saga runs on, its flow, and what the start event
    said. A saga also starts on another of its events that arrives first (topics are not
    ordered among each other); then ``start_seen`` is False and a :class:`Captured` follows
    when the start event comes."""

    kind: ClassVar[str] = "saga.started"
    saga_type: str
    definition_version: int
    correlation_id: str
    captured: dict[str, Any]
    start_seen: bool = True


class Captured(Fact):
    """What the start event said, when it came after another of the saga's events."""

    kind: ClassVar[str] = "data.captured"
    captured: dict[str, Any]


class StepStarted(Fact):
    """A participant took its step up (its started signal)."""

    kind: ClassVar[str] = "step.started"
    step: str


class TriggerSeen(Fact):
    """The coordinator read the message that sets these steps' participants going, at this
    position of the log: a participant has got to it once its consumer group consumed every
    record before it (:mod:`saga_coordinator.fairness`)."""

    kind: ClassVar[str] = "trigger.seen"
    steps: tuple[str, ...]
    topic: str
    partition: int
    offset: int


class StepSucceeded(Fact):
    """A step's success event, with what the saga keeps from it."""

    kind: ClassVar[str] = "step.succeeded"
    step: str
    captured: dict[str, Any]


class StepFailed(Fact):
    """A step's failure event (or, ``deadline`` set, one of its deadlines passed), with the
    cancel reason it leads to (None for a step that is not critical)."""

    kind: ClassVar[str] = "step.failed"
    step: str
    detail: str
    reason: str | None = None
    deadline: Literal["pick_up", "answer"] | None = None


class TaskRequested(Fact):
    """Decision: a person must decide; open until ``expires_at``. Renders the request."""

    kind: ClassVar[str] = "task.requested"
    task: str
    expires_at: datetime


class TaskDecided(Fact):
    """A decision: a person's (``by`` set), the policy's (``auto``), or the timeout's."""

    kind: ClassVar[str] = "task.decided"
    task: str
    outcome: Literal["approved", "rejected", "auto", "timed_out"]
    detail: str | None = None
    captured: dict[str, Any] = {}


class TaskEscalated(Fact):
    """Decision: the request expired and the definition escalates: an operator must decide.
    Renders the needs-attention event; the task stays open."""

    kind: ClassVar[str] = "task.escalated"
    task: str


class UndoStarted(Fact):
    """Decision: the saga failed; undo the steps of ``plan`` in that order (newest first)."""

    kind: ClassVar[str] = "undo.started"
    reason: str
    detail: str | None = None
    plan: tuple[str, ...]


class UndoAdded(Fact):
    """Decision: a step succeeded after the saga gave up; undo it at once (attempt 1)."""

    kind: ClassVar[str] = "undo.added"
    step: str
    reason: str


class UndoRequested(Fact):
    """Decision: send (again) a step's compensating command. Renders it."""

    kind: ClassVar[str] = "undo.requested"
    step: str
    attempt: int


class UndoAcknowledged(Fact):
    """The participant acknowledged a step's compensating command."""

    kind: ClassVar[str] = "undo.acknowledged"
    step: str


class UndoExhausted(Fact):
    """Decision: a compensating command went unacknowledged ``attempts`` times. Renders the
    needs-attention event; a late acknowledgement still resumes the saga."""

    kind: ClassVar[str] = "undo.exhausted"
    step: str
    attempts: int


class Completed(Fact):
    """Decision: every step succeeded (optional ones may have failed: ``notes``)."""

    kind: ClassVar[str] = "saga.completed"
    notes: tuple[str, ...] = ()


class Cancelled(Fact):
    """Decision: every compensation is acknowledged."""

    kind: ClassVar[str] = "saga.cancelled"
    reason: str
    detail: str | None = None


class Ignored(Fact):
    """An event too late or out of place to change anything; kept for the record."""

    kind: ClassVar[str] = "event.ignored"
    event_type: str
    why: str
