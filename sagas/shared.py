"""Knobs and render helpers that more than one shipped definition uses.

The compensation knobs are one pair for every saga on purpose: `CHOREO_SAGA_COMPENSATION_*`
tunes all of them (knobs are overridden by name).
"""

from __future__ import annotations

from datetime import timedelta

from sagas.definition import Knob
from sagas.emit import Emit

ACK_TIMEOUT = Knob("compensation_ack_timeout", timedelta(seconds=10), "Then it is sent again.")
MAX_ATTEMPTS = Knob("compensation_max_attempts", 5, "Sends before the saga needs attention.")


def deadline(step: str, seconds: int) -> Knob[timedelta]:
    """The answer deadline knob of ``step`` (``<step>_deadline``), ``seconds`` by default."""
    return Knob(f"{step}_deadline", timedelta(seconds=seconds), f"How long {step} may take.")


def attempt_reason(e: Emit) -> str:
    """A compensating command's reason, with the attempt number from the second send on."""
    return e.reason if e.attempt == 1 else f"{e.reason} (attempt {e.attempt})"
