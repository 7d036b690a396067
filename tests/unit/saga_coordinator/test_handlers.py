"""The coordinator's handlers and timer firing, on the in-memory saga store."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from contracts.catalog import (
    CATALOG,
    InventoryRelease,
    OrderApprovalRequested,
    OrderApproved,
    OrderCancelled,
    OrderCompleted,
)
from contracts.return_samples import sample_return_requested
from events.model import Event, Message
from saga_coordinator import legacy
from saga_coordinator.context import CoordinatorContext
from saga_coordinator.engine.facts import Started
from saga_coordinator.engine.state import fold
from saga_coordinator.errors import SagaConflictError, UnknownDefinitionError
from saga_coordinator.handlers import router
from saga_coordinator.memory_store import InMemorySagaStore
from saga_coordinator.timers import fire_timer
from sagas.order import V1
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

from .flow import (
    LARGE,
    T0,
    approved,
    charged,
    crm_updated,
    declined,
    email_sent,
    message,
    placed,
    released,
    reserved,
    scheduled,
    types,
)

HANDLED = {
    "order.placed",
    "order.approved",
    "order.rejected",
    "inventory.reserved",
    "inventory.reservation_failed",
    "inventory.released",
    "payment.charged",
    "payment.declined",
    "payment.refunded",
    "shipment.scheduled",
    "shipment.failed",
    "shipment.cancelled",
    "crm.customer_updated",
    "email.sent",
    "email.failed",
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> InMemorySagaStore:
    return InMemorySagaStore()


@pytest.fixture
def ctx(store: InMemorySagaStore, clock: Clock) -> CoordinatorContext:
    return CoordinatorContext(store, SagaRegistry([V1]), clock)


async def status(store: InMemorySagaStore, key: str) -> str | None:
    """The saga's status, folded from the store as the coordinator folds it."""
    facts = legacy.read(await store.load(key), SagaRegistry([V1]))
    return fold(key, facts).status(V1) if facts else None


async def handle(ctx: CoordinatorContext, msg: Message[Event]) -> list[Event]:
    spec = router.get(msg.envelope.event_type)
    assert spec is not None, f"no handler for {msg.envelope.event_type}"
    return list(await spec.func(msg, ctx) or ())


async def fire_due(ctx: CoordinatorContext, store: InMemorySagaStore) -> list[Message[Event]]:
    fired: list[Message[Event]] = []
    for timer in await store.due(ctx.clock(), 100):
        messages = await fire_timer(ctx, timer)
        assert messages is not None
        fired.extend(messages)
    return fired


RETURNS_HANDLED = {
    "return.requested",
    "return.approved",
    "return.rejected",
    "pickup.scheduled",
    "pickup.failed",
    "pickup.cancelled",
    "inventory.restocked",
    "inventory.restock_refused",
    "inventory.unstocked",
    "payment.return_refunded",
    "payment.return_refund_declined",
}


def test_router_handles_exactly_the_events_the_shipped_definitions_name():
    assert set(router.event_types) == HANDLED | RETURNS_HANDLED  # email.* serve both sagas
    assert set(CATALOG) >= HANDLED | RETURNS_HANDLED


async def test_happy_path_through_the_handlers(ctx, store):
    assert await handle(ctx, message(placed())) == []
    assert await store.timers("ord-1") == {"deadline:inventory": T0 + timedelta(seconds=30)}
    [approval] = await handle(ctx, message(reserved()))
    assert isinstance(approval, OrderApproved)
    for event in (charged(), scheduled(), crm_updated()):
        assert await handle(ctx, message(event)) == []
    [completed] = await handle(ctx, message(email_sent()))
    assert isinstance(completed, OrderCompleted)
    assert await status(store, "ord-1") == "completed"
    assert await store.timers("ord-1") == {}
    assert await store.all_sagas() == ["ord-1"]
    facts = await store.load("ord-1")
    assert [f.kind for f in facts][:3] == ["saga.started", "step.succeeded", "task.decided"]


async def test_redelivery_through_the_handlers_appends_nothing(ctx, store):
    await handle(ctx, message(placed()))
    msg = message(reserved())
    assert await handle(ctx, msg)
    count = len(await store.load("ord-1"))
    assert await handle(ctx, msg) == []
    assert len(await store.load("ord-1")) == count


async def test_timers_fire_through_the_store_and_continue_the_flow(ctx, store, clock):
    await handle(ctx, message(placed()))
    last = message(reserved())
    await handle(ctx, last)
    clock.now = T0 + timedelta(seconds=29)
    assert await fire_due(ctx, store) == []
    clock.now = T0 + timedelta(seconds=30)
    [msg] = await fire_due(ctx, store)  # payment deadline
    assert isinstance(msg.event, InventoryRelease)
    assert msg.envelope.correlation_id == "corr-1"
    assert msg.envelope.causation_id == str(last.envelope.event_id)
    assert msg.envelope.producer == "saga-coordinator"
    assert await store.timers("ord-1") == {
        "ack:inventory.release": clock.now + timedelta(seconds=10)
    }
    assert await status(store, "ord-1") == "compensating"

    clock.now += timedelta(seconds=10)
    [retry] = await fire_due(ctx, store)
    assert isinstance(retry.event, InventoryRelease)
    assert retry.event.reason.endswith("(attempt 2)")

    [cancelled] = await handle(ctx, message(released()))
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "payment_timeout"
    assert await store.timers("ord-1") == {}
    assert await fire_due(ctx, store) == []


async def test_a_running_saga_finishes_on_its_version_after_v2_is_registered(store, clock):
    v2 = dataclasses.replace(
        V1,
        version=2,
        nodes=[node for node in V1.nodes if node.name != "crm"],
        overrides={"approval_threshold_minor": 1_000_000},
    )
    old = CoordinatorContext(store, SagaRegistry([V1]), clock)
    await handle(old, message(placed(LARGE), order_id="ord-old"))

    # v2 is deployed: the same store, a registry that knows both versions.
    new = CoordinatorContext(store, SagaRegistry([V1, v2]), clock)
    [request] = await handle(new, message(reserved(), order_id="ord-old"))
    assert isinstance(request, OrderApprovalRequested)  # v1 rules: above 1,000.00 asks
    await handle(new, message(approved(), order_id="ord-old", producer="cli"))
    for event in (charged(LARGE), scheduled(), email_sent()):
        assert await handle(new, message(event, order_id="ord-old")) == []
    assert await status(store, "ord-old") == "shipped"  # v1 also waits for the CRM
    [done] = await handle(new, message(crm_updated(), order_id="ord-old"))
    assert isinstance(done, OrderCompleted)

    await handle(new, message(placed(LARGE), order_id="ord-new"))
    [auto] = await handle(new, message(reserved(), order_id="ord-new"))
    assert isinstance(auto, OrderApproved)  # v2 rules for a saga started on v2
    started = {oid: (await store.load(oid))[0] for oid in ("ord-old", "ord-new")}
    assert all(isinstance(f, Started) for f in started.values())
    versions = {oid: f.definition_version for oid, f in started.items() if isinstance(f, Started)}
    assert versions == {"ord-old": 1, "ord-new": 2}


async def test_a_saga_on_an_unregistered_version_fails_loudly(store, clock):
    v2 = dataclasses.replace(V1, version=2)
    await handle(CoordinatorContext(store, SagaRegistry([v2]), clock), message(placed()))
    rolled_back = CoordinatorContext(store, SagaRegistry([V1]), clock)
    with pytest.raises(UnknownDefinitionError, match="v2"):
        await handle(rolled_back, message(reserved()))


async def test_a_concurrent_append_is_a_retryable_conflict(ctx, store):
    await handle(ctx, message(placed()))
    state = fold("ord-1", legacy.read(await store.load("ord-1"), SagaRegistry([V1])))
    facts = await store.load("ord-1")
    with pytest.raises(SagaConflictError) as err:
        await store.append("ord-1", facts[:1], expected_seq=state.version - 1)
    assert err.value.retryable


async def test_compensation_ignores_unrelated_orders(ctx, store):
    await handle(ctx, message(placed(), order_id="ord-a"))
    await handle(ctx, message(placed(), order_id="ord-b"))
    await handle(ctx, message(reserved(), order_id="ord-a"))
    await handle(ctx, message(reserved(), order_id="ord-b"))
    emitted = await handle(ctx, message(declined(), order_id="ord-a"))
    assert types(emitted) == ["inventory.release"]
    assert await status(store, "ord-a") == "compensating"
    assert await status(store, "ord-b") == "reserved"


def of_type(msg: Message[Event], saga_type: str) -> Message[Event]:
    return Message(msg.envelope.model_copy(update={"saga_type": saga_type}), msg.event)


async def test_a_message_of_a_saga_type_with_no_definition_is_refused(ctx, store):
    with pytest.raises(UnknownDefinitionError, match="no saga definition of type 'loan'"):
        await handle(ctx, of_type(message(placed(), order_id="ln-1"), "loan"))
    assert await store.load("ln-1") == []  # nothing recorded: the message is dead-lettered


async def test_a_message_of_another_saga_type_cannot_join_a_running_saga(store, clock):
    other = dataclasses.replace(V1, saga_type="refill")
    ctx = CoordinatorContext(store, SagaRegistry([V1, other]), clock)
    await handle(ctx, message(placed(), order_id="ord-x"))
    with pytest.raises(UnknownDefinitionError, match="names saga ord-x, which is a order saga"):
        await handle(ctx, of_type(message(reserved(), order_id="ord-x"), "refill"))
    assert await status(store, "ord-x") == "placed"  # the order saga did not move


async def test_a_return_sagas_timer_messages_name_the_return_saga(store, clock):
    ctx = CoordinatorContext(store, SAGAS, clock)
    requested = sample_return_requested("ord-1", items=(("SKU-RED-MUG", 1, 1_250),))
    emitted = await handle(ctx, of_type(message(requested, order_id="ret-1"), "return"))
    assert types(emitted) == ["return.approved"]  # below the threshold: the policy approves
    clock.now = T0 + timedelta(minutes=5)  # past every step's deadline
    fired = await fire_due(ctx, store)
    assert [m.envelope.event_type for m in fired] == ["return.cancelled"]
    assert {m.envelope.saga_type for m in fired} == {"return"}
    assert {m.envelope.saga_key for m in fired} == {"ret-1"}
