"""Durable timers: the background task that fires the sagas' due deadlines and ack timeouts.

Timers are rows in PostgreSQL written in the same transaction as the facts that call for them,
so they survive restarts by construction. :func:`timer_loop` polls; each pass takes a batch of
due rows (``FOR UPDATE SKIP LOCKED``, so replicas share the work) in one transaction and fires
each in a savepoint: lock the saga (skipping it if a handler holds it), fold, decide, append,
stage the emitted messages in the outbox, and move or delete the timer. One timer's failure
rolls back only its own savepoint and is retried after :data:`RETRY_DELAY`. Live, a due
timer is first judged (:mod:`saga_coordinator.fairness`): one whose participant has not had
its full time, or whose answer may still be unread, is held back in its row and looked at
again shortly.
:class:`SagaTimers` is the same firing as the process's :class:`~events.process.Timers`, for a
replay (``choreo replay coordinator``) to drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime, timedelta

import asyncpg

from events import tracing
from events.database import untraced_transaction
from events.errors import ChoreoError
from events.model import Envelope, Event, Message
from events.service import ServiceRuntime
from events.spans import RuntimeTracer
from saga_coordinator import SERVICE_NAME as PRODUCER
from saga_coordinator.context import CoordinatorContext
from saga_coordinator.engine.state import SagaState
from saga_coordinator.engine.timing import TimerFired
from saga_coordinator.fairness import Fairness
from saga_coordinator.handlers import advance_saga
from saga_coordinator.legacy import ORDER_TYPE
from saga_coordinator.store import Timer
from sagas.definition import SagaDefinition

log = logging.getLogger("choreo.saga.timers")
_tracer = RuntimeTracer("choreo.saga")

RETRY_DELAY = timedelta(seconds=5)
"""How long a timer whose firing failed waits before the next try (avoids a hot loop)."""


async def fire_timer(
    ctx: CoordinatorContext, timer: Timer, fairness: Fairness | None = None
) -> list[Message[Event]] | None:
    """Fire one due timer through ``ctx`` (in the caller's transaction).

    Returns the messages to emit, enveloped to continue the saga's flow (its correlation id,
    caused by the last event it saw), or None if the saga is busy (try again later). With
    ``fairness`` (the live loop; a replay fires without it), a timer whose verdict says wait is
    held back instead (its row says until when) and emits nothing.
    """
    fired = TimerFired(timer.order_id, timer.name, timer.due_at)
    # One instant for the facts and the envelopes, as a handler's delivery has: a replay reads
    # it back from the envelopes (events.replay.engine).
    now = ctx.clock()
    gate = None
    if fairness is not None:

        async def gate(state: SagaState, definition: SagaDefinition) -> bool:
            return await fairness.holds(state, definition, timer, now, ctx.store)

    decision = await advance_saga(ctx, timer.order_id, fired, wait=False, now=now, gate=gate)
    if decision is None:
        return None
    return [saga_message(decision.state, event, now) for event in decision.events]


def saga_message(state: SagaState, event: Event, now: datetime) -> Message[Event]:
    """Wrap an event the coordinator emits outside a handler (a timer) in an envelope that
    continues the saga's flow: its correlation id, caused by the last event the saga saw."""
    return Message(
        Envelope(
            event_id=uuid.uuid4(),
            event_type=event.event_type,
            saga_type=state.saga_type or ORDER_TYPE,  # facts stored before definitions: orders
            saga_key=state.key,
            correlation_id=state.correlation_id or state.key,
            causation_id=str(state.last_event_id) if state.last_event_id is not None else None,
            occurred_at=now.replace(microsecond=now.microsecond // 1000 * 1000),
            producer=PRODUCER,
            schema_version=event.schema_version,
        ),
        event,
    )


class SagaTimers:
    """The sagas' durable timers as :class:`~events.process.Timers`: what a replay fires."""

    async def pending(self, context: CoordinatorContext, key: str) -> dict[str, datetime]:
        """The saga ``key``'s timers, by name: when each is due."""
        return await context.store.timers(key)

    async def fire(
        self, context: CoordinatorContext, key: str, name: str, due_at: datetime
    ) -> list[Message[Event]] | None:
        """Fire saga ``key``'s timer ``name`` (see :func:`fire_timer`)."""
        return await fire_timer(context, Timer(key, name, due_at))


async def fire_due_timers(
    runtime: ServiceRuntime[CoordinatorContext], *, limit: int, fairness: Fairness | None = None
) -> int:
    """One pass: fire up to ``limit`` due timers (judged by ``fairness`` if given); returns how
    many fired or were held back."""
    async with runtime.db.pool.acquire() as conn:
        ctx = runtime.context(conn)
        now = ctx.clock()
        with tracing.housekeeping():  # an idle pass, several times a second, is no trace
            if not await ctx.store.any_due(now):
                return 0
        async with untraced_transaction(conn):  # each timer's firing has its own span
            return await _fire(runtime, ctx, conn, now, limit, fairness)


async def _fire(
    runtime: ServiceRuntime[CoordinatorContext],
    ctx: CoordinatorContext,
    conn: asyncpg.Connection,
    now: datetime,
    limit: int,
    fairness: Fairness | None,
) -> int:
    """Fire up to ``limit`` due timers, each in a savepoint of the caller's transaction."""
    fired = 0
    with tracing.housekeeping():
        due = await ctx.store.due(now, limit)
    for timer in due:
        try:
            with _tracer.start_as_current_span(
                f"saga timer {timer.name}",
                context=tracing.extract_traceparent(timer.traceparent),
                attributes={"choreo.order_id": timer.order_id, "choreo.timer": timer.name},
            ):
                async with conn.transaction():  # a savepoint per timer
                    messages = await fire_timer(ctx, timer, fairness)
                    if messages:
                        await runtime.emit(conn, messages)
        except Exception:
            log.exception("timer %s of saga %s failed", timer.name, timer.order_id)
            await ctx.store.schedule(
                timer.order_id, timer.name, now + RETRY_DELAY, timer.traceparent
            )
            continue
        if messages is not None:
            fired += 1
    return fired


async def timer_loop(
    runtime: ServiceRuntime[CoordinatorContext],
    *,
    poll_interval_s: float = 0.15,
    batch_size: int = 100,
    fairness: Fairness | None = None,
) -> None:
    """Fire due timers every ``poll_interval_s`` until ``runtime.stopping`` is set, each when
    ``fairness`` (if given) lets it."""
    log.info("timer loop polling every %.0f ms", poll_interval_s * 1000)
    while not runtime.stopping.is_set():
        try:
            while (
                await fire_due_timers(runtime, limit=batch_size, fairness=fairness) >= batch_size
                and not runtime.stopping.is_set()
            ):
                pass  # a full batch: more may be due right now
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ChoreoError) as exc:
            # The database is away (one timer's own failure is handled inside the pass); a
            # programming error, anything else, ends the process rather than spin.
            log.warning("timer pass failed, retrying: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stopping.wait(), poll_interval_s)
