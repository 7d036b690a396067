"""The replay plan: which log records are replayed, in which order, at which instant, with
which emission; and how produced events are matched against recorded ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts.catalog import (
    EmailFailed,
    OrderApproved,
    PaymentCharged,
    PaymentRefund,
    PaymentRefunded,
    ShipmentScheduled,
)
from contracts.samples import sample_order_placed
from events.dlq import DeadLetter
from events.model import Envelope, Event, Message
from events.replay.plan import Emission, Logged, Step, plan, remaining_after
from events.settings import get_settings
from services.email.handlers import router as email_router
from services.payment.handlers import router as payment_router

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = get_settings().model_copy(update={"topic_prefix": "t."})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def message(
    event: Event,
    when: datetime,
    *,
    producer: str = "test",
    cause: Message[Event] | None = None,
    order_id: str = "o1",
) -> Message[Event]:
    return Message(
        Envelope(
            event_id=uuid.uuid4(),
            event_type=event.event_type,
            saga_type="order",
            saga_key=order_id,
            correlation_id="c1",
            causation_id=str(cause.envelope.event_id) if cause else None,
            occurred_at=when,
            producer=producer,
            schema_version=event.schema_version,
        ),
        event,
    )


def logged(topic: str, partition: int, offset: int, msg: Message[Event]) -> Logged:
    return Logged(f"t.{topic}", partition, offset, msg)


def charged(when: datetime) -> PaymentCharged:
    return PaymentCharged(payment_id="pay-1", amount_minor=1, currency="EUR", charged_at=when)


def payment_plan(records: list[Logged], dead: dict | None = None):
    return plan(
        records,
        router=payment_router,
        topics=payment_router.topics(SETTINGS),
        producer="payment",
        dead=dead or {},
    )


def test_inputs_run_at_the_instant_of_their_emission_or_else_after_they_occurred():
    placed = message(sample_order_placed(), at(0))
    approved = message(OrderApproved(approved_by="x", approved_at=at(1)), at(1))
    refund = message(
        PaymentRefund(amount_minor=1, currency="EUR", reason="r", requested_at=at(3)), at(3)
    )
    charge = message(charged(at(5)), at(5), producer="payment", cause=approved)
    refunded = message(
        PaymentRefunded(payment_id="pay-1", amount_minor=1, currency="EUR", refunded_at=at(4)),
        at(4),
        producer="payment",
        cause=refund,
    )
    the_plan = payment_plan(
        [
            logged("order", 0, 0, placed),
            logged("order", 0, 1, approved),
            logged("payment", 0, 0, refund),
            logged("payment", 0, 1, refunded),
            logged("payment", 0, 2, charge),
            logged("payment", 0, 3, charge),  # the outbox published it twice
        ]
    )
    steps = the_plan.steps
    assert [s.message for s in steps] == [placed, refund, approved]
    assert [s.at for s in steps] == [at(0), at(4), at(5)]
    assert steps[2].emission is not None
    assert steps[2].emission.events == [charge.event]  # once
    assert all(isinstance(i, Step) or i.owner is not None for i in the_plan.timeline)
    assert (the_plan.inputs, the_plan.skipped) == (6, 3)  # payment.* events are not inputs


def test_an_input_that_emitted_nothing_is_not_placed_before_the_one_ahead_of_it_occurred():
    placed = message(sample_order_placed(), at(1))
    placed_late = message(sample_order_placed(), at(0), order_id="o2")  # an older clock
    approved = message(OrderApproved(approved_by="x", approved_at=at(2)), at(2))
    charge = message(charged(at(5)), at(5), producer="payment", cause=approved)
    the_plan = payment_plan(
        [
            logged("order", 0, 0, placed),
            logged("order", 0, 1, placed_late),
            logged("order", 0, 2, approved),
            logged("order", 1, 0, message(sample_order_placed(), at(3), order_id="o3")),
            logged("payment", 0, 0, charge),
        ]
    )
    first, second, third, fourth = the_plan.steps
    assert (first.message, second.message, fourth.message) == (placed, placed_late, approved)
    assert second.position == at(1)
    assert second.at == at(0)  # its clock is still its own occurred_at
    assert third.position == at(3)  # another partition, before the approval's instant


def test_duplicates_and_dead_letters_are_not_replayed_but_give_up_hooks_are():
    placed = message(sample_order_placed(), at(0))
    booked = ShipmentScheduled(
        shipment_id="s", carrier="DHL", country_code="DE", scheduled_at=at(1)
    )
    shipment = message(booked, at(1), producer="shipping")
    failed = message(
        EmailFailed(
            template="order_confirmation", reason="bounce", permanent=True, failed_at=at(2)
        ),
        at(2),
        producer="email",
        cause=shipment,
    )
    letter = DeadLetter(
        reason="bounce",
        error_type="MailBounced",
        consumer="t.email",
        source_topic="t.shipment",
        source_partition=0,
        source_offset=0,
        attempts=1,
        dead_at=at(2),
    )
    the_plan = plan(
        [
            logged("order", 0, 0, placed),
            logged("order", 0, 1, placed),  # delivered twice
            logged("shipment", 0, 0, shipment),
            logged("shipment", 0, 1, shipment),  # redriven: fails again (hook ran once)
            logged("email", 0, 0, failed),
        ],
        router=email_router,
        topics=email_router.topics(SETTINGS),
        producer="email",
        dead={("t.shipment", 0, 0): letter, ("t.shipment", 0, 1): letter},
    )
    assert (the_plan.duplicates, the_plan.dead_lettered) == (1, 2)
    [first, hook] = the_plan.steps
    assert (first.message, first.dead) == (placed, None)
    assert (hook.message, hook.dead, hook.at) == (shipment, letter, at(2))


def test_emissions_no_input_explains_stay_in_the_timeline_unowned():
    timer = message(OrderApproved(approved_by="x", approved_at=at(9)), at(9), producer="payment")
    the_plan = payment_plan([logged("order", 0, 0, timer)])
    emissions = [i for i in the_plan.timeline if isinstance(i, Emission)]
    [step] = the_plan.steps
    assert step.emission is None
    assert len(emissions) == 1
    assert emissions[0].owner is None
    assert emissions[0].describe().startswith("order o1 at")


def test_produced_events_are_matched_against_the_recorded_ones():
    one, two = charged(at(1)), charged(at(2))
    assert remaining_after([one, two], [two]) == [one]
    assert remaining_after([one], [two]) is None
    assert remaining_after([one], [two], strict=False) == []
    assert remaining_after([one], []) == [one]
