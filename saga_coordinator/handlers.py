"""What the coordinator reacts to: every event some saga definition names, one way.

:func:`advance` does the same four things for any of them through :func:`advance_saga`: lock
the saga, load and fold its facts (only the new ones, when the process remembers it:
:mod:`saga_coordinator.cache`), :func:`~saga_coordinator.engine.decide.decide` on the saga's
pinned definition, store the new facts and timer changes; it returns the events and commands
to emit, which the runtime wraps in envelopes caused by the incoming message and stages in the
outbox in the same transaction. Which events those are comes from the definitions
(:func:`build_router`); the policy itself lives in them too (:mod:`sagas`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime

from events import metrics, tracing
from events.model import Event, Message
from events.router import Router
from saga_coordinator import SERVICE_NAME as PRODUCER
from saga_coordinator.cache import load_state, read_ahead
from saga_coordinator.context import CoordinatorContext
from saga_coordinator.engine.decide import Decision, decide
from saga_coordinator.engine.state import SagaState
from saga_coordinator.engine.timing import TimerFired
from saga_coordinator.errors import SagaConflictError, UnknownDefinitionError
from saga_coordinator.store import Decided
from sagas.definition import SagaDefinition
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

log = logging.getLogger("choreo.saga")

Gate = Callable[[SagaState, SagaDefinition], Awaitable[bool]]
"""Asked before a due timer is decided on: True holds it back (the timer loop's fairness)."""


async def advance_saga(
    ctx: CoordinatorContext,
    key: str,
    incoming: Message[Event] | TimerFired,
    *,
    wait: bool = True,
    now: datetime | None = None,
    gate: Gate | None = None,
) -> Decision | None:
    """Decide what ``incoming`` means for saga ``key`` and store the outcome.

    Returns the decision (its events are for the caller to emit), or None when ``wait`` is
    False and another transaction is working on the saga. ``now`` defaults to ``ctx.clock()``.
    ``gate``, given for a due timer, may hold it back: then nothing is decided.

    Raises:
        UnknownDefinitionError: the saga runs on a definition this coordinator does not have
            (permanent: the message is dead-lettered with the reason).
    """
    state = await load_state(ctx.store, key, ctx.definitions, ctx.cache, wait=wait, held=ctx.held)
    if state is None:
        return None
    definition = pinned(ctx.definitions, state, incoming)
    if definition is None:
        return Decision(state)  # no saga to start: an event of no saga we know
    if gate is not None and await gate(state, definition):
        return Decision(state)  # held back: looked at again later
    decision = decide(state, incoming, definition, ctx.clock() if now is None else now, PRODUCER)
    await _record(ctx, key, state, decision)
    if decision.facts:
        # Remembered before the commit: should the transaction roll back, the store's check
        # of the last fact (load_state) finds it missing and reads the stream again.
        ctx.cache.put(key, decision.state, decision.facts[-1])
    _record_metrics(state, decision, definition)
    if decision.facts:
        log.debug(
            "saga %s: %s -> %s, emits %s",
            key,
            ", ".join(f.kind for f in decision.facts),
            decision.state.status(definition),
            ", ".join(e.event_type for e in decision.events) or "nothing",
        )
    return decision


async def _record(ctx: CoordinatorContext, key: str, state: SagaState, decision: Decision) -> None:
    """Store ``decision`` (made on ``state``) now, or with its batch's others when ``ctx`` is a
    batch's (:func:`sagas_of_batch`)."""
    decided = Decided(
        key,
        decision.facts,
        expected_seq=state.version,
        timers=decision.timers,
        traceparent=tracing.traceparent() if decision.timers else None,
    )
    if key in ctx.held.locked:
        ctx.held.states[key] = decision.state  # for the batch's next message of the saga
    if ctx.held.decided is not None:
        ctx.held.decided.append(decided)
        return
    try:
        await ctx.store.record(
            key, decided.facts, state.version, decided.timers, decided.traceparent
        )
    except SagaConflictError:
        ctx.cache.drop(key)
        raise


def pinned(
    sagas: SagaRegistry, state: SagaState, incoming: Message[Event] | TimerFired
) -> SagaDefinition | None:
    """The definition a saga runs on: the one it started with, or for a saga not started yet
    the current one of the message's saga type (None if that type does not name the event).

    Raises:
        UnknownDefinitionError: the message's saga type has no definition here, it names a
            saga of another type, or the saga started on a version this process lacks.
    """
    saga_type = incoming.envelope.saga_type if isinstance(incoming, Message) else None
    if saga_type is not None and saga_type not in sagas.types:
        known = ", ".join(sagas.types)
        raise UnknownDefinitionError(f"no saga definition of type {saga_type!r} (have {known})")
    if state.started:
        if saga_type is not None and saga_type != state.saga_type:
            raise UnknownDefinitionError(
                f"a {saga_type} message names saga {state.key}, which is a {state.saga_type} saga"
            )
        try:
            return sagas.get(state.saga_type or "", state.definition_version or 0)
        except KeyError as exc:
            raise UnknownDefinitionError(str(exc)) from None
    if not isinstance(incoming, Message):
        return sagas.current(sagas.types[0])  # a stray timer of no saga: deciding cancels it
    current = sagas.current(incoming.envelope.saga_type)
    return current if current.names(incoming.event) else None


def _record_metrics(before: SagaState, decision: Decision, definition: SagaDefinition) -> None:
    """Saga duration when a saga ends, and each compensating command sent."""
    after = decision.state
    ended = {"completed", "cancelled"}
    was, now = before.status(definition), after.status(definition)
    if now in ended and was not in ended and after.started_at is not None:
        outcome = now if now == "completed" else f"cancelled:{after.cancel_reason}"
        ended_at = after.completed_at or after.cancelled_at or after.started_at
        metrics.saga_duration().record(
            max(0.0, (ended_at - after.started_at).total_seconds()), {"outcome": outcome}
        )
    commands = {s.compensation.command.event_type for s in definition.steps if s.compensation}
    for event in decision.events:
        if event.event_type in commands:
            metrics.compensations().add(1, {"command": event.event_type})


@contextlib.asynccontextmanager
async def sagas_of_batch(
    ctx: CoordinatorContext, messages: Sequence[Message[Event]]
) -> AsyncIterator[None]:
    """The runtime's batch scope (``ctx`` serves the whole batch): its sagas locked and read in
    one round trip before its messages are decided on, and the decisions recorded in one
    statement after the last, instead of two round trips per message."""
    with tracing.housekeeping():
        await read_ahead(ctx.store, (m.saga_key for m in messages), ctx.cache, ctx.held)
    ctx.held.decided = []
    yield
    decided, ctx.held.decided = ctx.held.decided, None
    try:
        with tracing.housekeeping():
            await ctx.store.record_many(decided)
    except SagaConflictError:
        for each in decided:
            ctx.cache.drop(each.order_id)
        raise


async def advance(message: Message[Event], ctx: CoordinatorContext) -> list[Event]:
    """Any event a definition reacts to: decide on the saga it belongs to."""
    decision = await advance_saga(ctx, message.saga_key, message)
    assert decision is not None  # waiting for the lock never gives up
    return list(decision.events)


def build_router(sagas: SagaRegistry) -> Router[CoordinatorContext]:
    """The coordinator's router: :func:`advance` for every event some definition reacts to,
    so a new definition's events are listened to without a line here."""
    router: Router[CoordinatorContext] = Router(PRODUCER, sagas.catalog)
    for model in sagas.listens:
        router.on(model)(advance)
    return router


router = build_router(SAGAS)
"""The coordinator's handlers: one per event type the shipped definitions react to."""
