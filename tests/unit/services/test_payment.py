"""Payment handlers on the in-memory store and the simulated gateway: every token trigger, one
charge per order, one refund per order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from contracts.catalog import (
    OrderApproved,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefund,
    PaymentRefunded,
)
from contracts.samples import sample_order_placed
from events.errors import TransientError
from events.model import Message, utc_now
from events.settings import get_settings
from services.payment import SERVICE_NAME, handlers
from services.payment.context import PaymentContext, PaymentSettings
from services.payment.provider import Charged, GatewayUnavailable, SimulatedGateway
from services.payment.service import build
from services.payment.store import ChargeSummary, InMemoryPaymentStore
from tests.unit.services import emitted

TOTAL = 2 * 1250 + 899  # sample_order_placed's default lines


def context(**settings) -> PaymentContext:
    config = PaymentSettings(**settings)
    gateway = SimulatedGateway(
        flaky_failures=config.flaky_failures,
        slow_delay_s=config.slow_delay_s,
        failure_rate=config.failure_rate,
        rng=random.Random(1),
    )
    return PaymentContext(InMemoryPaymentStore(), gateway, config)


def gateway(ctx: PaymentContext) -> SimulatedGateway:
    assert isinstance(ctx.provider, SimulatedGateway)
    return ctx.provider


@pytest.fixture
def ctx() -> PaymentContext:
    return context()


def placed(order_id: str, token: str = "tok_visa") -> Message:
    order = sample_order_placed(payment_token=token)
    return Message.first(order, saga_type="order", saga_key=order_id, producer="test")


def approved(order_id: str) -> Message:
    event = OrderApproved(approved_by="saga-coordinator", approved_at=utc_now())
    return Message.first(event, saga_type="order", saga_key=order_id, producer="saga-coordinator")


def refund(order_id: str) -> Message:
    command = PaymentRefund(
        amount_minor=TOTAL, currency="EUR", reason="shipment_failed", requested_at=utc_now()
    )
    return Message.first(command, saga_type="order", saga_key=order_id, producer="saga-coordinator")


async def charge_order(ctx: PaymentContext, order_id: str, token: str = "tok_visa") -> list:
    assert await emitted(handlers.remember_intent(placed(order_id, token), ctx)) == []
    return await emitted(handlers.charge(approved(order_id), ctx))


async def test_an_approved_order_is_charged_its_total(ctx):
    [event] = await charge_order(ctx, "o1")
    assert isinstance(event, PaymentCharged)
    assert (event.amount_minor, event.currency, event.attempt) == (TOTAL, "EUR", 1)
    assert await ctx.store.charges() == {"o1": ChargeSummary(event.payment_id, TOTAL, False, 0)}


async def test_a_second_approval_re_emits_the_charge_and_charges_nothing_more(ctx):
    [first] = await charge_order(ctx, "o1")
    [second] = await emitted(handlers.charge(approved("o1"), ctx))
    assert second == first
    assert ctx.provider.attempts["o1"] == 1  # the gateway was not even asked again
    assert len(await ctx.store.charges()) == 1


async def test_declined_token_is_declined_once(ctx):
    [event] = await charge_order(ctx, "o1", "tok_declined")
    assert isinstance(event, PaymentDeclined)
    assert event.reason == "card_declined"
    assert await emitted(handlers.charge(approved("o1"), ctx)) == [event]
    assert ctx.provider.attempts["o1"] == 1
    assert await ctx.store.charges() == {}


async def test_flaky_token_fails_transiently_then_records_the_successful_attempt(ctx):
    await emitted(handlers.remember_intent(placed("o1", "tok_flaky"), ctx))
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            await emitted(handlers.charge(approved("o1"), ctx))
    assert await ctx.store.payment("o1") is None
    [event] = await emitted(handlers.charge(approved("o1"), ctx))
    assert isinstance(event, PaymentCharged)
    assert event.attempt == 3


class CountedOnce:
    """One call count for every gateway given it, as PostgresGatewayCalls is for replicas."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def count(self, key: str) -> int:
        self.calls[key] += 1
        return self.calls[key]


async def test_replicas_sharing_the_call_count_see_one_flaky_gateway():
    shared = CountedOnce()
    replicas = [SimulatedGateway(flaky_failures=2, shared_calls=shared) for _ in range(2)]
    outcomes: list[object] = []
    for call in range(3):  # the attempts alternate between the replicas
        try:
            outcomes.append(
                await replicas[call % 2].charge(
                    idempotency_key="o1", amount_minor=100, currency="EUR", token="tok_flaky"
                )
            )
        except GatewayUnavailable as exc:
            outcomes.append(str(exc))
    assert outcomes[:2] == [
        "payment gateway unavailable (attempt 1)",
        "payment gateway unavailable (attempt 2)",
    ]
    assert isinstance(outcomes[2], Charged)
    assert outcomes[2].attempt == 3
    assert [r.attempts["o1"] for r in replicas] == [2, 1]  # each replica's own calls


async def test_flaky_failures_are_configurable():
    ctx = context(flaky_failures=0)
    [event] = await charge_order(ctx, "o1", "tok_flaky")
    assert event.attempt == 1


async def test_a_gateway_that_never_answers_times_out_as_a_transient_error():
    ctx = context(gateway_timeout_s=0.05)
    await emitted(handlers.remember_intent(placed("o1", "tok_timeout"), ctx))
    with pytest.raises(TransientError, match="did not answer"):
        await emitted(handlers.charge(approved("o1"), ctx))
    assert await ctx.store.payment("o1") is None
    assert gateway(ctx).charges == {}


async def test_a_slow_answer_within_the_timeout_is_a_charge():
    ctx = context(slow_delay_s=0.05, gateway_timeout_s=1.0)
    [event] = await charge_order(ctx, "o1", "tok_slow")
    assert isinstance(event, PaymentCharged)


async def test_a_late_answer_is_retried_and_finds_the_same_charge():
    ctx = context(slow_delay_s=0.3, gateway_timeout_s=0.05)
    await emitted(handlers.remember_intent(placed("o1", "tok_slow"), ctx))
    with pytest.raises(TransientError):
        await emitted(handlers.charge(approved("o1"), ctx))
    [event] = await emitted(handlers.charge(approved("o1"), ctx))  # the runtime's retry
    assert isinstance(event, PaymentCharged)
    assert event.attempt == 2
    assert gateway(ctx).charges["o1"].payment_id == event.payment_id  # one charge, not two


async def test_approval_before_the_order_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"order\.placed not seen"):
        await emitted(handlers.charge(approved("o1"), ctx))


async def test_random_failure_rate_makes_calls_transient_failures():
    ctx = context(failure_rate=1.0)
    await emitted(handlers.remember_intent(placed("o1"), ctx))
    with pytest.raises(TransientError):
        await emitted(handlers.charge(approved("o1"), ctx))


async def test_refund_returns_the_charge_once_however_often_it_is_commanded(ctx):
    [charged] = await charge_order(ctx, "o1")
    acks = [await emitted(handlers.refund(refund("o1"), ctx)) for _ in range(3)]
    assert all(
        ack
        == [
            PaymentRefunded(
                payment_id=charged.payment_id,
                amount_minor=TOTAL,
                currency="EUR",
                refunded_at=acks[0][0].refunded_at,
            )
        ]
        for ack in acks
    )
    assert list(ctx.provider.refunds) == ["o1"]
    assert await ctx.store.charges() == {"o1": ChargeSummary(charged.payment_id, TOTAL, True, 1)}


async def test_refund_without_a_charge_is_acknowledged_with_nothing_and_blocks_a_late_charge(ctx):
    await emitted(handlers.remember_intent(placed("o1"), ctx))
    [ack] = await emitted(handlers.refund(refund("o1"), ctx))
    assert (ack.payment_id, ack.amount_minor, ack.currency) == ("none", 0, "EUR")
    assert await emitted(handlers.charge(approved("o1"), ctx)) == []
    assert ctx.provider.attempts["o1"] == 0
    assert await ctx.store.charges() == {}


async def test_refund_of_a_declined_order_moves_no_money(ctx):
    await charge_order(ctx, "o1", "tok_declined")
    [ack] = await emitted(handlers.refund(refund("o1"), ctx))
    assert (ack.payment_id, ack.amount_minor) == ("none", 0)
    assert ctx.provider.refunds == {}


async def test_refund_finds_a_charge_whose_answer_came_too_late():
    ctx = context(slow_delay_s=0.3, gateway_timeout_s=0.05)
    await emitted(handlers.remember_intent(placed("o1", "tok_slow"), ctx))
    with pytest.raises(TransientError):
        await emitted(handlers.charge(approved("o1"), ctx))  # money moved, the answer was lost
    [ack] = await emitted(handlers.refund(refund("o1"), ctx))
    gateway_charge = gateway(ctx).charges["o1"]
    assert (ack.payment_id, ack.amount_minor) == (gateway_charge.payment_id, TOTAL)
    assert await ctx.store.charges() == {"o1": ChargeSummary(ack.payment_id, TOTAL, True, 1)}
    # And it is never charged again.
    assert await emitted(handlers.charge(approved("o1"), ctx)) == []


async def test_a_failed_refund_call_is_transient_and_leaves_the_order_open(ctx):
    await charge_order(ctx, "o1")
    ctx.provider.failure_rate = 1.0
    with pytest.raises(GatewayUnavailable):
        await emitted(handlers.refund(refund("o1"), ctx))
    assert (await ctx.store.charges())["o1"].refunded is False
    ctx.provider.failure_rate = 0.0
    [ack] = await emitted(handlers.refund(refund("o1"), ctx))
    assert ack.amount_minor == TOTAL


def test_settings_have_the_documented_defaults_and_environment_names(monkeypatch):
    defaults = PaymentSettings()
    assert (defaults.gateway_timeout_s, defaults.slow_delay_s, defaults.flaky_failures) == (
        2.0,
        1.5,
        2,
    )
    assert defaults.failure_rate == 0.0
    monkeypatch.setenv("CHOREO_PAYMENT_GATEWAY_TIMEOUT_S", "0.5")
    monkeypatch.setenv("CHOREO_PAYMENT_SLOW_DELAY_S", "3")
    monkeypatch.setenv("CHOREO_PAYMENT_FLAKY_FAILURES", "4")
    monkeypatch.setenv("CHOREO_PAYMENT_FAILURE_RATE", "0.25")
    assert PaymentSettings() == PaymentSettings(
        gateway_timeout_s=0.5, slow_delay_s=3, flaky_failures=4, failure_rate=0.25
    )


def test_build_declares_the_service():
    service = build(get_settings(), PaymentSettings())
    assert service.name == SERVICE_NAME == "payment"
    assert service.router.event_types == [
        "inventory.restocked",
        "order.approved",
        "order.placed",
        "payment.refund",
        "return.requested",
    ]


async def test_only_a_flaky_cards_calls_are_counted_where_replicas_share_them():
    shared = CountedOnce()
    gateway = SimulatedGateway(flaky_failures=2, shared_calls=shared)
    for key in ("o1", "o1"):
        charged = await gateway.charge(
            idempotency_key=key, amount_minor=100, currency="EUR", token="tok_visa"
        )
        assert isinstance(charged, Charged)
    assert charged.attempt == 2  # this process's own count
    with pytest.raises(GatewayUnavailable):
        await gateway.charge(
            idempotency_key="o2", amount_minor=100, currency="EUR", token="tok_flaky"
        )
    assert shared.calls == Counter({"o2": 1})
