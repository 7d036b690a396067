"""What the coordinator reacts to: one handler per event type of the order flow.

Every handler does the same four things through :func:`advance_saga`: lock the saga, load and
fold its facts, :func:`~saga_coordinator.engine.decide.decide` on the saga's pinned
definition, store the new facts and timer changes;
it returns the events and commands to emit, which the runtime wraps in envelopes caused by the
incoming message and stages in the outbox in the same transaction. The per-type handlers exist
so that what the coordinator listens to reads in one place and registration is checked at
import; the policy itself lives in the definitions (:mod:`sagas`), interpreted by the engine.
"""

from __future__ import annotations

import logging
from datetime import datetime

from contracts.catalog import (
    CATALOG,
    CrmCustomerUpdated,
    EmailFailed,
    EmailSent,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderApproved,
    OrderPlaced,
    OrderRejected,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentCancelled,
    ShipmentFailed,
    ShipmentScheduled,
)
from events import metrics, tracing
from events.model import Event, Message
from events.router import Router
from saga_coordinator import SERVICE_NAME as PRODUCER
from saga_coordinator import legacy
from saga_coordinator.context import CoordinatorContext
from saga_coordinator.engine.decide import Decision, decide
from saga_coordinator.engine.state import SagaState, fold
from saga_coordinator.engine.timing import CancelTimer, ScheduleTimer, TimerFired
from saga_coordinator.errors import UnknownDefinitionError
from sagas.definition import SagaDefinition
from sagas.registry import SagaRegistry

log = logging.getLogger("choreo.saga")


async def advance_saga(
    ctx: CoordinatorContext,
    key: str,
    incoming: Message[Event] | TimerFired,
    *,
    wait: bool = True,
    now: datetime | None = None,
) -> Decision | None:
    """Decide what ``incoming`` means for saga ``key`` and store the outcome.

    Returns the decision (its events are for the caller to emit), or None when ``wait`` is
    False and another transaction is working on the saga. ``now`` defaults to ``ctx.clock()``.

    Raises:
        UnknownDefinitionError: the saga runs on a definition this coordinator does not have
            (permanent: the message is dead-lettered with the reason).
    """
    if not await ctx.store.lock(key, wait=wait):
        return None
    state = fold(key, legacy.read(await ctx.store.load(key), ctx.definitions))
    definition = pinned(ctx.definitions, state, incoming)
    if definition is None:
        return Decision(state)  # no saga to start: an event of no saga we know
    decision = decide(state, incoming, definition, ctx.clock() if now is None else now, PRODUCER)
    if decision.facts:
        await ctx.store.append(key, decision.facts, expected_seq=state.version)
    for op in decision.timers:
        match op:
            case ScheduleTimer():
                await ctx.store.schedule(key, op.name, op.due_at, tracing.traceparent())
            case CancelTimer():
                await ctx.store.cancel(key, op.name)
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


def pinned(
    sagas: SagaRegistry, state: SagaState, incoming: Message[Event] | TimerFired
) -> SagaDefinition | None:
    """The definition a saga runs on: the one it started with, or for a saga not started yet
    the current one of the type that ``incoming`` starts (None if it starts none)."""
    if state.started:
        try:
            return sagas.get(state.saga_type or "", state.definition_version or 0)
        except KeyError as exc:
            raise UnknownDefinitionError(str(exc)) from None
    if isinstance(incoming, TimerFired):
        return sagas.current(sagas.types[0])  # a stray timer of no saga: deciding cancels it
    return sagas.starting(incoming.event)


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


async def _advance(message: Message[Event], ctx: CoordinatorContext) -> list[Event]:
    decision = await advance_saga(ctx, message.saga_key, message)
    assert decision is not None  # waiting for the lock never gives up
    return list(decision.events)


router: Router[CoordinatorContext] = Router("saga-coordinator", CATALOG)
"""The coordinator's handlers."""


@router.on(OrderPlaced)
async def on_order_placed(message: Message[OrderPlaced], ctx: CoordinatorContext) -> list[Event]:
    """Start the saga (pinning the current definition) and the inventory deadline."""
    return await _advance(message, ctx)


@router.on(InventoryReserved)
async def on_inventory_reserved(
    message: Message[InventoryReserved], ctx: CoordinatorContext
) -> list[Event]:
    """Approve by policy, or ask a human above the threshold; late: release the stock."""
    return await _advance(message, ctx)


@router.on(InventoryReservationFailed)
async def on_reservation_failed(
    message: Message[InventoryReservationFailed], ctx: CoordinatorContext
) -> list[Event]:
    """Cancel as out of stock; nothing is held, so nothing to compensate."""
    return await _advance(message, ctx)


@router.on(OrderApproved)
async def on_order_approved(
    message: Message[OrderApproved], ctx: CoordinatorContext
) -> list[Event]:
    """A human's approval starts the payment deadline; a late one is recorded and ignored."""
    return await _advance(message, ctx)


@router.on(OrderRejected)
async def on_order_rejected(
    message: Message[OrderRejected], ctx: CoordinatorContext
) -> list[Event]:
    """A human's rejection: release the stock, then cancel (approval_rejected)."""
    return await _advance(message, ctx)


@router.on(PaymentCharged)
async def on_payment_charged(
    message: Message[PaymentCharged], ctx: CoordinatorContext
) -> list[Event]:
    """Start the shipping deadline; on a saga that gave up, refund the charge."""
    return await _advance(message, ctx)


@router.on(PaymentDeclined)
async def on_payment_declined(
    message: Message[PaymentDeclined], ctx: CoordinatorContext
) -> list[Event]:
    """Release the stock, then cancel (payment_declined)."""
    return await _advance(message, ctx)


@router.on(ShipmentScheduled)
async def on_shipment_scheduled(
    message: Message[ShipmentScheduled], ctx: CoordinatorContext
) -> list[Event]:
    """Start the CRM and email deadlines; on a saga that gave up, cancel the shipment."""
    return await _advance(message, ctx)


@router.on(ShipmentFailed)
async def on_shipment_failed(
    message: Message[ShipmentFailed], ctx: CoordinatorContext
) -> list[Event]:
    """Refund, then release, then cancel (shipment_failed)."""
    return await _advance(message, ctx)


@router.on(CrmCustomerUpdated)
async def on_crm_updated(
    message: Message[CrmCustomerUpdated], ctx: CoordinatorContext
) -> list[Event]:
    """One of the two things completion waits for."""
    return await _advance(message, ctx)


@router.on(EmailSent)
async def on_email_sent(message: Message[EmailSent], ctx: CoordinatorContext) -> list[Event]:
    """The confirmation email's outcome, the other thing completion waits for."""
    return await _advance(message, ctx)


@router.on(EmailFailed)
async def on_email_failed(message: Message[EmailFailed], ctx: CoordinatorContext) -> list[Event]:
    """Email is not critical: the order completes with a note."""
    return await _advance(message, ctx)


@router.on(InventoryReleased)
async def on_inventory_released(
    message: Message[InventoryReleased], ctx: CoordinatorContext
) -> list[Event]:
    """Acknowledges `inventory.release`; may finish the compensation."""
    return await _advance(message, ctx)


@router.on(PaymentRefunded)
async def on_payment_refunded(
    message: Message[PaymentRefunded], ctx: CoordinatorContext
) -> list[Event]:
    """Acknowledges `payment.refund`; the next compensation follows."""
    return await _advance(message, ctx)


@router.on(ShipmentCancelled)
async def on_shipment_cancelled(
    message: Message[ShipmentCancelled], ctx: CoordinatorContext
) -> list[Event]:
    """Acknowledges `shipment.cancel`; the next compensation follows."""
    return await _advance(message, ctx)
