"""Deadlines judged by the participant's own time: the live timer loop's verdict, through the
coordinator's handlers and timer firing on the in-memory store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contracts.catalog import OrderApproved
from events.model import Event, Message
from events.settings import Settings
from saga_coordinator.context import CoordinatorContext
from saga_coordinator.engine.state import fold
from saga_coordinator.engine.timing import Pickup, Watch, watch
from saga_coordinator.fairness import Fairness, Hold, Names, verdict
from saga_coordinator.handlers import router
from saga_coordinator.memory_store import InMemorySagaStore
from saga_coordinator.progress import ProgressLog, Sample
from saga_coordinator.timers import fire_timer
from sagas.order import V1
from sagas.registry import SagaRegistry

from .flow import T0, charged, declined, message, placed, reserved

NAMES = Names.of(Settings(topic_prefix="choreo."))
PAYMENT, COORDINATOR = "choreo.payment", "choreo.saga-coordinator"
ORDERS, PAYMENTS = ("choreo.order", 0), ("choreo.payment", 0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Queues:
    """The broker as sampled: the order and payment topics' ends, and how far payment (on
    orders) and the coordinator (on payments) have consumed."""

    def __init__(self) -> None:
        self.log = ProgressLog(keep=timedelta(minutes=10), stale=timedelta(seconds=2))
        self.orders = self.payments = self.payment_seen = self.coordinator_seen = 0
        self.payment_live = True

    def tick(self, seconds: float) -> None:
        self.log.add(
            Sample(
                at=at(seconds),
                ends={ORDERS: self.orders, PAYMENTS: self.payments},
                committed={
                    PAYMENT: {ORDERS: self.payment_seen},
                    COORDINATOR: {PAYMENTS: self.coordinator_seen},
                },
                live=frozenset({COORDINATOR, *([PAYMENT] if self.payment_live else [])}),
            )
        )

    def run(self, start: float, stop: float) -> None:
        """A sample every half second in [start, stop]."""
        for step in range(int(start * 2), int(stop * 2) + 1):
            self.tick(step / 2)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> InMemorySagaStore:
    return InMemorySagaStore()


@pytest.fixture
def ctx(store: InMemorySagaStore, clock: Clock) -> CoordinatorContext:
    return CoordinatorContext(store, SagaRegistry([V1]), clock)


@pytest.fixture
def queues() -> Queues:
    return Queues()


@pytest.fixture
def fairness(queues: Queues) -> Fairness:
    return Fairness(queues.log, NAMES, recheck=timedelta(seconds=0.5))


async def handle(ctx: CoordinatorContext, msg: Message[Event]) -> list[Event]:
    spec = router.get(msg.envelope.event_type)
    assert spec is not None
    return list(await spec.func(msg, ctx) or ())


async def tick_timers(
    ctx: CoordinatorContext, store: InMemorySagaStore, fairness: Fairness | None
) -> list[Event]:
    fired: list[Event] = []
    for timer in await store.due(ctx.clock(), 100):
        messages = await fire_timer(ctx, timer, fairness)
        assert messages is not None
        fired.extend(m.event for m in messages)
    return fired


async def approved_at_one_second(ctx: CoordinatorContext, clock: Clock, queues: Queues) -> None:
    """Placed at T0, reserved at 1 s: the coordinator approves; payment's deadline runs."""
    queues.orders = 10  # what the order topic held before the approval
    queues.run(0, 0.5)
    await handle(ctx, message(placed()))
    clock.now = at(1)
    [approval] = await handle(ctx, message(reserved(), at=at(1)))
    assert isinstance(approval, OrderApproved)
    queues.orders = 11  # the approval, published at offset 10; the coordinator reads it back
    echo = message(approval, producer="saga-coordinator", at=at(1)).at(("choreo.order", 0, 10))
    assert await handle(ctx, echo) == []


async def test_a_participant_with_a_backlog_gets_its_time_from_when_it_got_to_the_trigger(
    ctx, store, clock, queues, fairness
):
    await approved_at_one_second(ctx, clock, queues)
    queues.run(1, 40)  # payment is stuck behind a backlog, then gets to it at 40.5 s
    queues.payment_seen = 11
    queues.run(40.5, 80)
    for second in (31, 45, 70):
        clock.now = at(second)
        assert await tick_timers(ctx, store, fairness) == []
    assert fold("ord-1", await store.load("ord-1")).cancel_reason is None
    clock.now = at(71)  # 30 s after it got to the approval, and still no answer
    [release] = await tick_timers(ctx, store, fairness)
    assert release.event_type == "inventory.release"
    assert fold("ord-1", await store.load("ord-1")).cancel_reason == "payment_timeout"


async def test_a_participant_that_got_the_trigger_at_once_and_never_answers_times_out_on_time(
    ctx, store, clock, queues, fairness
):
    await approved_at_one_second(ctx, clock, queues)
    queues.payment_seen = 11  # it took the approval up at once (a gateway that never answers)
    queues.run(1, 40)
    clock.now = at(30.9)
    assert await store.due(clock.now, 10) == []
    clock.now = at(31)
    [release] = await tick_timers(ctx, store, fairness)
    assert release.event_type == "inventory.release"


async def test_a_deadline_waits_for_the_coordinator_to_read_an_answer_sent_in_time(
    ctx, store, clock, queues, fairness
):
    await approved_at_one_second(ctx, clock, queues)
    queues.payment_seen = 11
    queues.run(1, 30)
    queues.payments = 1  # payment declined at 30 s; the coordinator has not read it yet
    queues.run(30.5, 40)
    for second in (31, 35, 40):
        clock.now = at(second)
        assert await tick_timers(ctx, store, fairness) == []
    # Later traffic does not move what the timer waits for: it was pinned when it came due.
    queues.payments = 50
    queues.run(40.5, 41)
    [timer] = await store.due(at(45), 10)
    assert timer.barrier == {PAYMENTS: 1}
    clock.now = at(41)
    [release] = await handle(ctx, message(declined(), at=at(41)))  # the read answer decides
    assert release.event_type == "inventory.release"
    state = fold("ord-1", await store.load("ord-1"))
    assert state.cancel_reason == "payment_declined"


async def test_a_deadline_fires_once_the_coordinator_read_past_the_pinned_barrier(
    ctx, store, clock, queues, fairness
):
    await approved_at_one_second(ctx, clock, queues)
    queues.payment_seen = 11
    queues.payments = 3  # other orders' answers, not read yet
    queues.run(1, 32)
    clock.now = at(31)
    assert await tick_timers(ctx, store, fairness) == []
    queues.coordinator_seen = 3
    queues.run(32.5, 33)
    clock.now = at(33)
    assert [e.event_type for e in await tick_timers(ctx, store, fairness)] == ["inventory.release"]


async def test_time_the_participant_was_down_or_the_broker_away_is_not_charged(
    ctx, store, clock, queues, fairness
):
    await approved_at_one_second(ctx, clock, queues)
    queues.payment_seen = 11  # got to it at once, then:
    queues.run(1, 10)
    queues.payment_live = False  # killed: no member consumes until 20 s
    queues.run(10.5, 20)
    queues.payment_live = True
    queues.run(20.5, 30)
    # the broker is away from 30 s to 50 s: no samples
    clock.now = at(45)
    assert await tick_timers(ctx, store, fairness) == []  # nothing is judged meanwhile
    queues.run(50, 80)
    clock.now = at(55)
    # Its own time so far: 1-10 s, 20.5-30 s, 50-55 s (an interval counts when both samples
    # around it show a member consuming): 23.5 s.
    assert await tick_timers(ctx, store, fairness) == []
    clock.now = at(61)
    assert await tick_timers(ctx, store, fairness) == []  # 29.5 s
    clock.now = at(61.5)
    assert [e.event_type for e in await tick_timers(ctx, store, fairness)] == ["inventory.release"]


async def test_a_participant_nobody_runs_is_judged_by_the_due_time(
    ctx, store, clock, queues, fairness
):
    await approved_at_one_second(ctx, clock, queues)
    queues.run(1, 32)
    fairness = Fairness(queues.log, Names(NAMES.topic, lambda p: f"other.{p}"), fairness.recheck)
    clock.now = at(31)
    assert [e.event_type for e in await tick_timers(ctx, store, fairness)] == ["inventory.release"]


async def test_without_a_judge_timers_fire_at_their_due_time(ctx, store, clock, queues):
    """What a replay does: it fires timers when the log shows they fired."""
    await approved_at_one_second(ctx, clock, queues)
    clock.now = at(31)
    assert [e.event_type for e in await tick_timers(ctx, store, None)] == ["inventory.release"]


async def test_an_answer_that_arrives_while_the_deadline_is_held_back_wins(
    ctx, store, clock, queues, fairness
):
    await approved_at_one_second(ctx, clock, queues)
    queues.run(1, 40)  # payment has not got to the approval
    clock.now = at(35)
    assert await tick_timers(ctx, store, fairness) == []
    assert await handle(ctx, message(charged(), at=at(36))) == []
    assert fold("ord-1", await store.load("ord-1")).status(V1) == "paid"
    assert "deadline:payment" not in await store.timers("ord-1")


def test_the_verdict_waits_while_the_broker_cannot_be_asked(queues):
    pickup = Pickup("payment", "order.approved", at(1), timedelta(seconds=30))
    w = Watch(("payment.charged",), pickup)
    wait = timedelta(seconds=1)
    assert verdict(w, at(31), None, at(31), queues.log, NAMES, wait) == Hold(at(32))


def test_what_each_timer_of_the_order_saga_waits_on():
    d = V1
    state = fold("ord-1", [])
    assert watch(state, d, "deadline:payment") == Watch(("payment.charged", "payment.declined"))
    assert watch(state, d, "deadline:nothing") is None


async def test_compensation_acks_and_steps_name_their_participant(ctx, store, clock, queues):
    await approved_at_one_second(ctx, clock, queues)
    clock.now = at(2)
    await handle(ctx, message(declined(), at=at(2)))
    state = fold("ord-1", await store.load("ord-1"))
    assert watch(state, V1, "ack:inventory.release") == Watch(
        ("inventory.released",),
        Pickup("inventory", "inventory.release", at(2), timedelta(seconds=10)),
    )


async def test_the_payment_step_waits_on_payment_getting_to_the_approval(ctx, store, clock, queues):
    await approved_at_one_second(ctx, clock, queues)
    state = fold("ord-1", await store.load("ord-1"))
    assert watch(state, V1, "deadline:payment") == Watch(
        ("payment.charged", "payment.declined"),
        Pickup(
            "payment",
            "order.approved",
            at(1),
            timedelta(seconds=30),
            read_at=("choreo.order", 0, 10),
            readable=True,
        ),
    )
    # order.placed came without a position here: where inventory must get to is not known.
    assert watch(state, V1, "deadline:inventory") == Watch(
        ("inventory.reserved", "inventory.reservation_failed"),
        Pickup("inventory", "order.placed", T0, timedelta(seconds=30), readable=True),
    )


async def test_until_the_coordinator_read_the_trigger_back_its_deadline_waits(
    ctx, store, clock, queues, fairness
):
    queues.orders = 10
    queues.run(0, 40)
    await handle(ctx, message(placed()))
    clock.now = at(1)
    await handle(ctx, message(reserved(), at=at(1)))  # approved; its echo not read yet
    clock.now = at(35)
    assert await tick_timers(ctx, store, fairness) == []
    [timer] = await store.due(at(36), 10)
    assert timer.name == "deadline:payment"


async def test_the_coordinator_records_where_it_read_each_steps_trigger(ctx, store, clock):
    placed_message = message(placed()).at(("choreo.order", 2, 7))
    await handle(ctx, placed_message)
    await handle(ctx, placed_message)  # redelivered: nothing new
    clock.now = at(1)
    [approval] = await handle(ctx, message(reserved(), at=at(1)).at(("choreo.inventory", 0, 3)))
    echo = message(approval, producer="saga-coordinator").at(("choreo.order", 1, 9))
    await handle(ctx, echo)
    await handle(ctx, message(charged()).at(("choreo.payment", 1, 4)))
    facts = [f for f in await store.load("ord-1") if f.kind == "trigger.seen"]
    assert [(f.steps, f.topic, f.partition, f.offset) for f in facts] == [
        (("inventory",), "choreo.order", 2, 7),
        (("payment",), "choreo.order", 1, 9),
        (("shipping",), "choreo.payment", 1, 4),
    ]
    state = fold("ord-1", await store.load("ord-1"))
    assert state.step("payment").trigger == ("choreo.order", 1, 9)
