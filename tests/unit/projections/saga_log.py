"""A saga run through the coordinator's engine, logged as the projector would log it.

:class:`LoggedRun` drives :class:`~tests.unit.saga_coordinator.engine.trip.Trip` (any
definition) and keeps the event log the run leaves on Kafka: every input a participant or a
person published, and every event and command the coordinator emitted, each at its own
instant (a millisecond apart, in the order they were produced). The coordinator's own events
that it consumes back (its auto-approval) are logged once, as emitted.
"""

from __future__ import annotations

from datetime import timedelta

from events.model import Event
from projections.model import LoggedEvent
from sagas.definition import SagaDefinition
from tests.unit.saga_coordinator.engine.trip import Trip

COORDINATOR = "saga-coordinator"


class LoggedRun:
    """One saga through the engine, with the log it leaves."""

    def __init__(self, definition: SagaDefinition, key: str = "s-1") -> None:
        self.trip = Trip(definition, key, producer=COORDINATOR)
        self.key = key
        self.log: list[LoggedEvent] = []

    def _record(self, event: Event, producer: str) -> None:
        at = self.trip.now + timedelta(milliseconds=len(self.log))
        self.log.append(
            LoggedEvent(
                f"00000000-0000-0000-0000-{len(self.log):012d}",
                event.event_type,
                self.key,
                at,
                producer,
                event.model_dump(mode="json"),
            )
        )

    def _emitted_since(self, count: int) -> None:
        for event in self.trip.emitted[count:]:
            self._record(event, COORDINATOR)

    def send(self, event: Event, producer: str = "participant") -> LoggedRun:
        """Publish ``event``; the coordinator reacts (its own events are already logged)."""
        before = len(self.trip.emitted)
        if producer != COORDINATOR:
            self._record(event, producer)
        self.trip.send(event, producer)
        self._emitted_since(before)
        return self

    def wait(self, seconds: float) -> LoggedRun:
        """Let time pass; the coordinator's timers fire."""
        before = len(self.trip.emitted)
        self.trip.wait(seconds)
        self._emitted_since(before)
        return self

    def auto(self) -> LoggedRun:
        """The coordinator consumes back the approval it emitted itself."""
        approved = next(e for e in reversed(self.trip.emitted) if e.event_type == "order.approved")
        return self.send(approved, COORDINATOR)
