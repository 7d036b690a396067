"""The circuit breaker's state machine, the bulkhead and the guard around a provider's
handlers (events/breakers.py), on a fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from contracts.catalog import CATALOG, OrderApproved, OrderPlaced
from contracts.samples import sample_order_placed
from events.breakers import (
    BreakerSettings,
    BreakerState,
    Bulkhead,
    CircuitBreaker,
    ProviderGuard,
    ProviderGuards,
    Transition,
)
from events.errors import NotReadyError, ProviderDeferred, ProviderUnavailable
from events.model import Event, Message
from events.providers import within
from events.router import Router

CONFIG = BreakerSettings(
    failure_threshold=3, window_s=10, cool_down_s=4, half_open_probes=1, busy_retry_ms=200
)
DOWN = ProviderUnavailable("gateway unavailable")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transitions() -> list[Transition]:
    return []


@pytest.fixture
def breaker(clock: Clock, transitions: list[Transition]) -> CircuitBreaker:
    return CircuitBreaker(
        "gateway", CONFIG, clock=clock, rng=random.Random(7), on_transition=transitions.append
    )


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read anew (mypy would take an earlier assertion for the state now)."""
    return breaker.state


def fail(breaker: CircuitBreaker, key: str) -> None:
    probe = breaker.admit(key)
    breaker.failed(probe, key, DOWN)


def open_it(breaker: CircuitBreaker) -> None:
    for key in ("m1", "m2", "m3"):
        fail(breaker, key)
    assert state(breaker) is BreakerState.OPEN


def test_it_opens_when_enough_different_messages_fail_in_a_row(
    breaker: CircuitBreaker, transitions: list[Transition]
):
    fail(breaker, "m1")
    fail(breaker, "m2")
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.failures == 2
    fail(breaker, "m3")
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened == 1
    assert breaker.last_error == "ProviderUnavailable: gateway unavailable"
    [change] = transitions
    assert (change.old, change.new) == (BreakerState.CLOSED, BreakerState.OPEN)
    assert change.reason.startswith("3 messages failed in a row within 10s")


def test_one_message_failing_again_and_again_does_not_open_it(breaker: CircuitBreaker):
    for _ in range(10):
        fail(breaker, "never-answers")
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.failures == 1


def test_a_success_clears_the_failures(breaker: CircuitBreaker):
    fail(breaker, "m1")
    fail(breaker, "m2")
    breaker.succeeded(breaker.admit("m0"))
    fail(breaker, "m3")
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.failures == 1


def test_failures_older_than_the_window_are_forgotten(breaker: CircuitBreaker, clock: Clock):
    fail(breaker, "m1")
    clock.now += 6
    fail(breaker, "m2")
    clock.now += 5  # m1 is 11 s old now
    fail(breaker, "m3")
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.failures == 2


def test_a_message_failing_again_counts_as_its_newest_failure(
    breaker: CircuitBreaker, clock: Clock
):
    fail(breaker, "m1")
    clock.now += 6
    fail(breaker, "m2")
    fail(breaker, "m1")  # m1 again: its failure now is 0 s old, not 6
    clock.now += 5
    fail(breaker, "m3")
    assert state(breaker) is BreakerState.OPEN


def test_while_open_calls_are_refused_with_the_rest_of_the_cool_down(
    breaker: CircuitBreaker, clock: Clock
):
    open_it(breaker)
    clock.now += 1
    with pytest.raises(ProviderDeferred) as refused:
        breaker.admit("m4")
    # 3 s of cool-down left, plus up to half the cool-down of jitter.
    assert 3 <= refused.value.retry_after_s <= 5
    assert refused.value.reason == "circuit open"
    retry_after = breaker.retry_after()
    assert retry_after is not None
    assert 3 <= retry_after <= 5
    assert state(breaker) is BreakerState.OPEN


def test_after_the_cool_down_one_probe_goes_through_and_a_success_closes_it(
    breaker: CircuitBreaker, clock: Clock, transitions: list[Transition]
):
    open_it(breaker)
    clock.now += 4
    assert breaker.retry_after() is None
    assert breaker.admit("m4") is True  # the probe
    assert state(breaker) is BreakerState.HALF_OPEN
    with pytest.raises(ProviderDeferred) as refused:
        breaker.admit("m5")  # a second caller while the probe is in flight
    assert refused.value.reason == "probe in flight"
    assert 0.2 <= refused.value.retry_after_s <= 0.4
    breaker.succeeded(True)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.admit("m6") is False
    assert [t.new for t in transitions] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_a_failed_probe_opens_it_again_for_a_whole_cool_down(breaker: CircuitBreaker, clock: Clock):
    open_it(breaker)
    clock.now += 4
    probe = breaker.admit("m4")
    breaker.failed(probe, "m4", DOWN)  # a message that had not failed before
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened == 2
    retry_after = breaker.retry_after()
    assert retry_after is not None
    assert retry_after >= 4


def test_a_probe_that_ends_without_a_verdict_lets_another_probe_through(
    breaker: CircuitBreaker, clock: Clock
):
    open_it(breaker)
    clock.now += 4
    probe = breaker.admit("m4")
    breaker.released(probe)  # e.g. the message was not ready yet
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.admit("m5") is True


def test_a_probe_that_had_failed_before_hands_the_probe_to_another_message(
    breaker: CircuitBreaker, clock: Clock
):
    open_it(breaker)  # m1, m2, m3: say, cards whose gateway never answers
    clock.now += 4
    probe = breaker.admit("m1")
    breaker.failed(probe, "m1", DOWN)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.opened == 1
    with pytest.raises(ProviderDeferred) as refused:
        breaker.admit("m1")  # no probe again in this spell
    assert refused.value.reason == "probe in flight"
    probe = breaker.admit("m4")
    assert probe is True
    breaker.succeeded(probe)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.admit("m1") is False


def test_an_outage_passes_over_at_most_as_many_probes_as_open_it(
    breaker: CircuitBreaker, clock: Clock
):
    open_it(breaker)
    clock.now += 4
    fail(breaker, "m1")
    fail(breaker, "m2")
    assert state(breaker) is BreakerState.HALF_OPEN
    fail(breaker, "m4")  # a message that had not failed: the provider is down
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened == 2
    clock.now += 4
    for key in ("m1", "m2", "m3"):  # the threshold: 3 passed over in this spell
        fail(breaker, key)
        assert state(breaker) is BreakerState.HALF_OPEN
    fail(breaker, "m4")  # failed before too, but the spell has passed over enough
    assert state(breaker) is BreakerState.OPEN
    assert breaker.opened == 3


def test_calls_admitted_before_it_opened_do_not_move_it(breaker: CircuitBreaker):
    early = [breaker.admit(f"e{i}") for i in range(4)]
    for key, probe in zip(("m1", "m2", "m3"), early, strict=False):
        breaker.failed(probe, key, DOWN)
    assert state(breaker) is BreakerState.OPEN
    breaker.succeeded(early[3])  # a slow call from before: no evidence about now
    assert state(breaker) is BreakerState.OPEN
    breaker.failed(False, "m9", DOWN)
    assert breaker.opened == 1


def test_each_provider_has_its_own_settings_over_the_shared_ones(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("CHOREO_BREAKER_COOL_DOWN_S", "7")
    monkeypatch.setenv("CHOREO_BREAKER_FAILURE_THRESHOLD", "9")
    monkeypatch.setenv("CHOREO_BREAKER_GATEWAY_COOL_DOWN_S", "2.5")
    monkeypatch.setenv("CHOREO_BREAKER_GATEWAY_CONCURRENCY", "4")
    gateway = BreakerSettings.for_provider("gateway")
    carrier = BreakerSettings.for_provider("carrier")
    assert (gateway.cool_down_s, gateway.concurrency, gateway.failure_threshold) == (2.5, 4, 9)
    assert (carrier.cool_down_s, carrier.concurrency, carrier.failure_threshold) == (7, 2, 9)
    assert carrier.window_s == BreakerSettings.model_fields["window_s"].default


async def test_the_bulkhead_refuses_a_caller_that_gets_no_slot_in_time():
    bulkhead = Bulkhead("carrier", limit=1, wait_s=0.05, busy_wait=lambda: 0.3)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow_call() -> None:
        async with bulkhead.slot():
            entered.set()
            await release.wait()

    slow = asyncio.create_task(slow_call())
    await entered.wait()
    assert bulkhead.in_use == 1
    with pytest.raises(ProviderDeferred) as refused:
        async with bulkhead.slot():
            pass
    assert (refused.value.reason, refused.value.retry_after_s) == ("busy", 0.3)
    release.set()
    await slow
    async with bulkhead.slot():
        assert bulkhead.in_use == 1
    assert bulkhead.in_use == 0


async def test_the_bulkhead_lets_a_caller_wait_for_a_slot_that_frees_in_time():
    bulkhead = Bulkhead("carrier", limit=1, wait_s=1.0, busy_wait=lambda: 0.3)
    order: list[str] = []

    async def call(name: str, hold_s: float) -> None:
        async with bulkhead.slot():
            order.append(name)
            await asyncio.sleep(hold_s)

    await asyncio.gather(call("first", 0.05), call("second", 0))
    assert order == ["first", "second"]


def guard(clock: Clock) -> ProviderGuard:
    return ProviderGuard("gateway", CONFIG, clock=clock, rng=random.Random(3))


async def test_the_guard_counts_provider_failures_and_only_those(clock: Clock):
    g = guard(clock)

    async def not_ready() -> None:
        raise NotReadyError("order.placed not seen yet")

    for key in ("m1", "m2", "m3"):
        with pytest.raises(NotReadyError):
            await g.call(key, not_ready)
    assert g.breaker.failures == 0

    async def down() -> None:
        raise DOWN

    for key in ("m1", "m2", "m3"):
        with pytest.raises(ProviderUnavailable):
            await g.call(key, down)
    assert state(g.breaker) is BreakerState.OPEN
    called: list[str] = []

    async def works() -> str:
        called.append("x")
        return "ok"

    with pytest.raises(ProviderDeferred):
        await g.call("m4", works)
    assert called == []  # the provider was not called
    assert g.deferred == 1


async def test_a_failed_probe_is_a_deferral_so_the_message_spends_no_attempt(clock: Clock):
    g = guard(clock)

    async def down() -> None:
        raise DOWN

    for key in ("m1", "m2", "m3"):
        with pytest.raises(ProviderUnavailable):
            await g.call(key, down)
    clock.now += 4
    with pytest.raises(ProviderDeferred) as refused:
        await g.call("m1", down)  # it failed before: another message will probe
    assert refused.value.reason == "probe failed"
    assert 0.2 <= refused.value.retry_after_s <= 0.4
    assert state(g.breaker) is BreakerState.HALF_OPEN
    with pytest.raises(ProviderDeferred) as refused:
        await g.call("m4", down)  # the provider is down
    assert refused.value.reason == "probe failed"
    assert refused.value.retry_after_s >= 4
    assert isinstance(refused.value.__cause__, ProviderUnavailable)
    clock.now += 6

    async def works() -> str:
        return "ok"

    assert await g.call("m1", works) == "ok"
    assert state(g.breaker) is BreakerState.CLOSED


async def test_an_injected_fault_fails_calls_before_they_reach_the_provider(clock: Clock):
    g = guard(clock)
    g.fault_rate = 1.0
    called: list[str] = []

    async def provider() -> None:
        called.append("provider")

    async def handler() -> None:
        called.append("handler")
        await within(provider(), 1.0, "the gateway")

    for key in ("m1", "m2", "m3"):
        with pytest.raises(ProviderUnavailable, match="injected fault"):
            await g.call(key, handler)
    assert called == ["handler"] * 3  # the handler ran; the provider was never reached
    assert state(g.breaker) is BreakerState.OPEN
    g.fault_rate = 0.0
    clock.now += 4
    called.clear()
    await g.call("m1", handler)
    assert called == ["handler", "provider"]
    assert state(g.breaker) is BreakerState.CLOSED


async def test_a_provider_call_holds_a_bulkhead_slot_only_while_it_runs(clock: Clock):
    g = guard(clock)
    seen: list[int] = []

    async def provider() -> None:
        seen.append(g.bulkhead.in_use)

    async def handler() -> None:
        seen.append(g.bulkhead.in_use)  # the handler's own work (its transaction): no slot
        await within(provider(), 1.0, "the gateway")
        seen.append(g.bulkhead.in_use)

    await g.call("m1", handler)
    assert seen == [0, 1, 0]
    await within(provider(), 1.0, "the gateway")  # outside any guarded handler: no bulkhead
    assert seen[-1] == 0


async def test_guards_wrap_only_the_handlers_that_declare_a_provider(clock: Clock):
    router: Router[None] = Router("test", CATALOG)
    calls: list[str] = []

    @router.on(OrderPlaced)
    async def remember(message: Message[OrderPlaced], context: None) -> list[Event]:
        return []

    @router.on(OrderApproved, provider="gateway")
    async def charge(message: Message[OrderApproved], context: None) -> list[Event]:
        calls.append(message.saga_key)
        raise DOWN

    assert router.providers == ["gateway"]
    guards = ProviderGuards(router.providers, lambda name: CONFIG, clock=clock)
    placed = router.get("order.placed")
    approved = router.get("order.approved")
    assert placed is not None
    assert approved is not None
    assert guards.guarded(placed) is placed
    wrapped = guards.guarded(approved)
    assert wrapped is guards.guarded(approved)  # wrapped once
    assert wrapped.name == approved.name  # logs and spans still name the handler
    assert guards.refusal(wrapped) is None
    message = Message.first(
        sample_order_placed(), saga_type="order", saga_key="ord-1", producer="test"
    )
    for _ in range(3):  # three different messages of one order
        with pytest.raises(ProviderUnavailable):
            await wrapped.func(
                Message.first(message.event, saga_type="order", saga_key="ord-1", producer="t"),
                None,
            )
    assert state(guards["gateway"].breaker) is BreakerState.OPEN
    assert guards.changed.is_set()
    refusal = guards.refusal(wrapped)
    assert refusal is not None
    assert refusal.provider == "gateway"
    assert guards.refusal(placed) is None
    assert guards.states() == [("gateway", BreakerState.OPEN, 0)]


def test_a_provider_name_is_checked_at_registration():
    router: Router[None] = Router("test", CATALOG)
    with pytest.raises(TypeError, match="provider 'Payment Gateway'"):

        @router.on(OrderPlaced, provider="Payment Gateway")
        async def handle(message: Message[OrderPlaced], context: None) -> list[Event]:
            return []
