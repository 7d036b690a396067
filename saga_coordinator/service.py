"""The saga coordinator as a Choreo process: :func:`build`.

``python -m saga_coordinator`` runs it (see ``__main__.py``) with the shared runtime: consumer
group ``<prefix>saga-coordinator``, schema ``<prefix>_saga_coordinator`` holding the inbox,
outbox, ``saga_events`` and ``saga_timers``, the timer loop as a background task, and its
timers (:class:`~saga_coordinator.timers.SagaTimers`) for a replay to fire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from events.database import Connection
from events.model import utc_now
from events.service import Service, ServiceRuntime
from events.settings import Settings
from saga_coordinator import SERVICE_NAME
from saga_coordinator.cache import SagaCache
from saga_coordinator.context import (
    CoordinatorContext,
    CoordinatorSettings,
    get_coordinator_settings,
)
from saga_coordinator.fairness import Fairness, Names
from saga_coordinator.handlers import router, sagas_of_batch
from saga_coordinator.progress import ProgressLog, ProgressSampler
from saga_coordinator.store import PostgresSagaStore
from saga_coordinator.store_sql import DDL
from saga_coordinator.timers import SagaTimers
from saga_coordinator.timers import timer_loop as run_timer_loop
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS


def build(
    settings: Settings,
    coordinator: CoordinatorSettings | None = None,
    *,
    definitions: SagaRegistry = SAGAS,
    clock: Callable[[], datetime] = utc_now,
) -> Service[CoordinatorContext]:
    """The saga coordinator process.

    Args:
        settings: The shared Choreo settings.
        coordinator: The coordinator's knobs; read from the environment if omitted.
        definitions: The saga definitions (tests register extra versions).
        clock: Now, in UTC (tests move time).
    """
    coordinator = coordinator or get_coordinator_settings()
    registry = definitions.with_knobs(coordinator.definition_overrides())
    poll_interval_s = coordinator.timer_poll_interval_ms / 1000
    batch_size = coordinator.timer_batch_size
    sample_s = coordinator.timer_progress_interval_ms / 1000
    names = Names.of(settings)
    progress = ProgressLog(
        keep=timedelta(minutes=10), stale=timedelta(seconds=max(3.0, 8 * sample_s))
    )
    fairness = Fairness(progress, names, recheck=timedelta(seconds=sample_s))

    cache = SagaCache(coordinator.cache_size)

    def context(conn: Connection, schema: str) -> CoordinatorContext:
        return CoordinatorContext(PostgresSagaStore(conn, schema), registry, clock, cache)

    async def timer_loop(runtime: ServiceRuntime[CoordinatorContext]) -> None:
        await run_timer_loop(
            runtime,
            poll_interval_s=poll_interval_s,
            batch_size=batch_size,
            fairness=fairness if coordinator.timer_fair else None,
        )

    async def progress_sampler(runtime: ServiceRuntime[CoordinatorContext]) -> None:
        sampler = _sampler(settings, registry, runtime.consumer.topics, progress, clock)
        await sampler.run(runtime.stopping, sample_s)

    return Service(
        name=SERVICE_NAME,
        router=router,
        context=context,
        ddl=DDL,
        # A background task that returns ends the process: without fairness, no sampler.
        background=(timer_loop, progress_sampler) if coordinator.timer_fair else (timer_loop,),
        timers=SagaTimers(),
        # Handlers touch only their own order's rows: the lanes never wait on each other.
        lanes=settings.topic_partitions,
        # A lane's sagas read in one round trip and its decisions recorded in another.
        batch_scope=sagas_of_batch,
    )


def _sampler(
    settings: Settings,
    registry: SagaRegistry,
    inputs: Sequence[str],
    progress: ProgressLog,
    clock: Callable[[], datetime],
) -> ProgressSampler:
    """The sampler of what the deadlines of ``registry``'s sagas wait on: the topics that
    answer them (the coordinator's ``inputs``), the topics of their triggers and commands, the
    coordinator's group and every participant's."""
    names = Names.of(settings)
    steps = [(d, s) for d in registry for s in d.steps]
    triggers = {(s.triggered_by or d.start).event_type for d, s in steps}
    participants = {s.participant for _, s in steps if s.participant is not None}
    return ProgressSampler(
        settings,
        topics={*inputs, *map(names.topic, [*triggers, *(m.event_type for m in registry.emits)])},
        groups=[names.group(SERVICE_NAME), *map(names.group, participants)],
        progress=progress,
        clock=clock,
    )
