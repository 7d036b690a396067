"""What the coordinator emits for a saga, built by the definition's render functions.

A render function gets an :class:`Emit` (the saga's data, the instant, the knob values and
what the decision is about) and returns the event or command; :class:`Endings` names the
three a saga emits when it completes, is cancelled, or needs attention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from events.model import Event

SagaData: TypeAlias = Mapping[str, Any]
"""What a saga captured from the events it saw, by name (e.g. ``total_minor``)."""


@dataclass(frozen=True, slots=True)
class Emit:
    """What a render function gets to build an event the coordinator emits.

    Attributes:
        data: What the saga captured so far.
        at: The coordinator's clock when it decided.
        knobs: The definition's knob values by name.
        reason: Why (a cancel reason, a compensation's reason, a needs-attention reason).
        detail: More words on it.
        attempt: The send of a compensating command (1 for the first).
        notes: What the saga completes with (optional steps that failed or timed out).
        step: The step or command concerned (needs attention).
    """

    data: SagaData
    at: datetime
    knobs: Mapping[str, Any]
    reason: str = ""
    detail: str | None = None
    attempt: int = 1
    notes: tuple[str, ...] = ()
    step: str = ""


Render: TypeAlias = Callable[[Emit], Event]
"""Builds one event the coordinator emits, from the saga's data."""


@dataclass(frozen=True, slots=True)
class Endings:
    """What the saga emits when it ends or gets stuck."""

    completed: Render
    cancelled: Render
    needs_attention: Render
