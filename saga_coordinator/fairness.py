"""Deadlines that judge the participant, not Choreo's own queues.

A step's deadline is the participant's time to answer. Live, messages also wait in Choreo's
own queues: the trigger in the broker before the participant's consumer gets to it (a
backlog, a participant restarting, a broker restart), the answer in the broker before the
coordinator reads it. Before a due timer fires, the timer loop asks :func:`verdict`:

1. **Pick-up.** For a step whose participant is named (and sends no started signal), its
   clock starts when the participant's consumer group had consumed every record before the
   trigger, on the partition where the coordinator read it (whatever partitioner put it there;
   :meth:`~saga_coordinator.progress.ProgressLog.reached`), and counts only time the group had
   a member consuming and the broker answered
   (:meth:`~saga_coordinator.progress.ProgressLog.working`). A participant that got the
   trigger and never answers (a gateway that never answers) or answers late (a slow one) is
   still judged ``limit`` after it got it. For a compensating command (which the coordinator
   does not read back) the clock starts once the participant has handled everything its topic
   held when the command was sent (:meth:`~saga_coordinator.progress.ProgressLog.handled`).
2. **Unread answers.** When the participant's time is up, the end offsets of every topic that
   could answer are pinned (once, in the timer's row) and the timer fires only when the
   coordinator's group has consumed past them: an answer sent in time is read first, and
   handling it cancels the timer. Pinning once means steady traffic cannot hold it forever.

A timer held back is written back with the time to look again (and its barrier), so any
replica may take it up next, and a restart loses nothing. While the broker cannot be asked,
nothing is judged: every deadline waits. The judgement decides only *when* a timer fires;
what firing decides is the engine's, from the saga's state and the time, so a replay (which
fires timers when the log shows they fired) stays deterministic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from events.settings import Settings
from events.topics import topic_for
from saga_coordinator import SERVICE_NAME
from saga_coordinator.engine.state import SagaState
from saga_coordinator.engine.timing import Watch, desired_timers, watch
from saga_coordinator.progress import Offsets, ProgressLog
from saga_coordinator.store import SagaStore, Timer
from sagas.definition import SagaDefinition

log = logging.getLogger("choreo.saga.fairness")


@dataclass(frozen=True, slots=True)
class Fire:
    """The timer may fire now."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Not yet: look again at ``until``; ``barrier`` (once pinned) is kept with the timer."""

    until: datetime
    barrier: Offsets | None = None


@dataclass(frozen=True, slots=True)
class Names:
    """Topic and consumer group names of a deployment."""

    topic: Callable[[str], str]
    group: Callable[[str], str]

    @staticmethod
    def of(settings: Settings) -> Names:
        return Names(
            topic=lambda event_type: topic_for(event_type, settings),
            group=lambda process: f"{settings.topic_prefix}{process}",
        )


# Long: the two questions of the module docs in order; split, the order would hide.
def verdict(
    w: Watch,
    due_at: datetime,
    barrier: Offsets | None,
    now: datetime,
    progress: ProgressLog,
    names: Names,
    recheck: timedelta,
) -> Fire | Hold:
    """Whether a timer the state calls due (``due_at``) may fire at ``now``; see the module."""
    again = now + recheck
    if not progress.fresh(now):
        return Hold(again, barrier)  # the broker does not answer: nothing is judged
    passed_at = due_at
    pickup = w.pickup
    if barrier is None and pickup is not None:
        group, topic = names.group(pickup.participant), names.topic(pickup.trigger)
        if progress.knows(group, topic):
            if pickup.read_at is not None:
                picked_up = progress.reached(group, pickup.read_at, pickup.since)
            elif pickup.readable:
                return Hold(again)  # the coordinator has not read the trigger yet
            else:
                picked_up = progress.handled(group, topic, pickup.since)
            if picked_up is None:
                return Hold(again)
            worked = progress.working(group, picked_up, now)
            if worked < pickup.limit:
                return Hold(max(again, now + (pickup.limit - worked)))
            passed_at = max(due_at, now - (worked - pickup.limit))
    if barrier is None:
        sample = progress.first_at_or_after(passed_at)
        if sample is None:
            return Hold(again)
        answer_topics = {names.topic(event_type) for event_type in w.answers}
        barrier = {tp: end for tp, end in sample.ends.items() if tp[0] in answer_topics}
    if progress.caught_up(names.group(SERVICE_NAME), barrier):
        return Fire()
    return Hold(again, barrier)


@dataclass
class Fairness:
    """The live timer loop's judge: holds a due timer back while the verdict says so.

    Args:
        progress: The sampled progress of the deployment's queues.
        names: Its topic and group names.
        recheck: How soon a held timer is looked at again.
    """

    progress: ProgressLog
    names: Names
    recheck: timedelta

    async def holds(
        self,
        state: SagaState,
        d: SagaDefinition,
        timer: Timer,
        now: datetime,
        store: SagaStore,
    ) -> bool:
        """Whether ``timer`` waits (then its row says until when); False: let it fire."""
        due_at = desired_timers(state, d).get(timer.name)
        w = watch(state, d, timer.name)
        if due_at is None or due_at > now or w is None:
            return False  # the engine moves or drops a timer the state no longer wants now
        judged = verdict(w, due_at, timer.barrier, now, self.progress, self.names, self.recheck)
        log.debug("timer %s of %s due %s: %s (%s)", timer.name, timer.order_id, due_at, judged, w)
        if isinstance(judged, Fire):
            return False
        await store.hold(timer.order_id, timer.name, judged.until, judged.barrier)
        return True
