"""The plan of a replay: which records of the log a process's replay delivers again, in which
order, at which instant, and what the live run emitted for each (see
:mod:`events.replay.engine`, which runs it).

Pure: no I/O here. :func:`plan` takes the decoded log and the process's router and dead letters;
:func:`remaining_after` matches what a replayed handler produces against what the log shows.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.dlq import DeadLetter
from events.model import Event, Message
from events.router import HandlerSpec, Router


@dataclass(frozen=True, slots=True)
class Logged:
    """One decoded record of the log, and where it is."""

    topic: str
    partition: int
    offset: int
    message: Message[Event]


@dataclass(eq=False)
class Emission:
    """What the process emitted at one instant for one cause: one delivery's (or one timer
    firing's) messages, as the log shows them.

    ``events`` shrinks as replayed deliveries and timer firings explain it; ``owner`` is the
    input it is taken to be the emission of, until that input is replayed.
    """

    order_id: str
    cause_id: str | None
    at: datetime
    events: list[Event]
    owner: Step | None = None

    def describe(self) -> str:
        kinds = ", ".join(e.event_type for e in self.events)
        return f"order {self.order_id} at {self.at.isoformat()}: {kinds}"


@dataclass(eq=False)
class Step:
    """One input to deliver again.

    ``dead``: the live run dead-lettered it, so only its give-up hook runs. ``emission``: what
    the live run emitted for it, whose instant is the clock of the delivery; without one the
    clock is the message's ``occurred_at`` and ``position`` places it in the timeline.
    """

    logged: Logged
    handler: HandlerSpec
    dead: DeadLetter | None
    emission: Emission | None = None
    position: datetime | None = None
    error: str = ""

    @property
    def message(self) -> Message[Event]:
        return self.logged.message

    @property
    def at(self) -> datetime:
        """The instant the clock is frozen at while this input is replayed."""
        if self.emission is not None:
            return self.emission.at
        return self.message.envelope.occurred_at

    def describe(self) -> str:
        env = self.message.envelope
        where = f"{self.logged.topic}@{self.logged.partition}/{self.logged.offset}"
        return f"{env.event_type} {env.event_id} of order {env.saga_key} ({where})"


@dataclass
class Plan:
    """The inputs and emissions of one process, in the order the live run processed them."""

    timeline: list[Step | Emission]
    inputs: int
    """Records of the process's topics (handled or not, decodable or not)."""
    skipped: int = 0
    """Records of event types the process has no handler for."""
    duplicates: int = 0
    """Records whose event id came before (the inbox skips them)."""
    dead_lettered: int = 0
    """Records the live run dead-lettered: not replayed (their give-up hooks are)."""

    @property
    def steps(self) -> list[Step]:
        return [item for item in self.timeline if isinstance(item, Step)]


def plan(
    logged: Iterable[Logged],
    *,
    router: Router[Any],
    topics: Collection[str],
    producer: str,
    dead: Mapping[tuple[str, int, int], DeadLetter],
) -> Plan:
    """Order the inputs of the process named ``producer`` and attach their emissions.

    Args:
        logged: Every decodable record of the event topics, in any order.
        router: The process's handlers.
        topics: The topics it consumes.
        producer: Its name in envelopes.
        dead: Its dead letters by source (topic, partition, offset).
    """
    records = sorted(logged, key=lambda r: (r.topic, r.partition, r.offset))
    emissions = _emissions(records, producer)
    by_cause: dict[str | None, list[Emission]] = defaultdict(list)
    for emission in sorted(emissions, key=lambda e: e.at):
        by_cause[emission.cause_id].append(emission)

    result = Plan(timeline=[], inputs=0)
    steps = _inputs(records, router=router, topics=topics, dead=dead, counts=result)

    # Each delivery of a cause took the cause's next emission, in offset order.
    for step in steps:
        queue = by_cause.get(str(step.message.envelope.event_id))
        if queue:
            step.emission = queue.pop(0)
            step.emission.owner = step
    result.timeline = _timeline(steps, emissions)
    return result


def _inputs(
    records: Sequence[Logged],
    *,
    router: Router[Any],
    topics: Collection[str],
    dead: Mapping[tuple[str, int, int], DeadLetter],
    counts: Plan,
) -> list[Step]:
    """The records to deliver again, in offset order; ``counts`` gets the ones that are not."""
    steps: list[Step] = []
    handled: set[uuid.UUID] = set()
    gave_up: set[uuid.UUID] = set()
    for record in records:
        if record.topic not in topics:
            continue
        counts.inputs += 1
        handler = router.get(record.message.envelope.event_type)
        if handler is None:
            counts.skipped += 1
            continue
        event_id = record.message.envelope.event_id
        letter = dead.get((record.topic, record.partition, record.offset))
        if letter is not None:
            counts.dead_lettered += 1
            # Live, the hook ran once per event id (its inbox row dedupes a second one).
            if handler.on_give_up is not None and event_id not in gave_up:
                gave_up.add(event_id)
                steps.append(Step(record, handler, letter))
            continue
        if event_id in handled:
            counts.duplicates += 1
            continue
        handled.add(event_id)
        steps.append(Step(record, handler, None))
    return steps


def _timeline(steps: list[Step], emissions: list[Emission]) -> list[Step | Emission]:
    """Inputs and unexplained emissions in the order the live run processed them."""
    # A partition is processed in order: an input that emitted nothing was processed after the
    # ones ahead of it occurred (its own occurred_at is only a lower bound). Not after their
    # emissions' instants: on the coordinator an emission caused by an input can be a later
    # timer firing's, which would push the whole partition behind it.
    floors: dict[tuple[str, int], datetime] = {}
    keyed: list[tuple[tuple[datetime, int, str, int, int], Step | Emission]] = []
    for step in steps:
        tp = (step.logged.topic, step.logged.partition)
        occurred = step.message.envelope.occurred_at
        floor = max(occurred, floors.get(tp, occurred))
        floors[tp] = floor
        if step.emission is not None:
            step.position, rank = step.emission.at, 0
        else:
            step.position, rank = floor, 2
        keyed.append(((step.position, rank, *tp, step.logged.offset), step))
    # At one instant: the inputs processed then, then timer firings, then inputs that only
    # occurred then (processed then or later).
    keyed.extend(((e.at, 1, "", 0, i), e) for i, e in enumerate(emissions))
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


def _emissions(records: Sequence[Logged], producer: str) -> list[Emission]:
    """The process's own messages, grouped by cause and instant (an outbox republished after
    a crash appears twice in the log: once counts)."""
    seen: set[uuid.UUID] = set()
    groups: dict[tuple[str, str | None, datetime], Emission] = {}
    for record in records:
        env = record.message.envelope
        if env.producer != producer or env.event_id in seen:
            continue
        seen.add(env.event_id)
        key = (env.saga_key, env.causation_id, env.occurred_at)
        if key not in groups:
            groups[key] = Emission(env.saga_key, env.causation_id, env.occurred_at, [])
        groups[key].events.append(record.message.event)
    return list(groups.values())


def remaining_after(
    expected: Sequence[Event], produced: Sequence[Event], *, strict: bool = True
) -> list[Event] | None:
    """``expected`` without the ``produced`` events, or None if one of them is not there.

    ``strict``: events must be equal field by field; otherwise the same type is enough.
    """
    left = list(expected)
    for event in produced:
        index = next(
            (
                i
                for i, candidate in enumerate(left)
                if (candidate == event if strict else type(candidate) is type(event))
            ),
            None,
        )
        if index is None:
            return None
        del left[index]
    return left
