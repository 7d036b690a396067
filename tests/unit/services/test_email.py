"""Email handlers on the in-memory store and the simulated mailer: once per (order, template),
bounces and flaky mailboxes, the give-up hooks, and no address in logs or events."""

from __future__ import annotations

import logging

import pytest

from contracts.catalog import EmailFailed, EmailSent, OrderCancelled, ShipmentScheduled
from contracts.personal import seal_personal_data
from contracts.samples import sample_order_placed
from events.errors import PermanentError, TransientError
from events.model import Message, utc_now
from events.personal_data import InMemoryKeyring, is_sealed
from events.settings import get_settings
from services.email import SERVICE_NAME, handlers
from services.email.context import EmailContext, EmailSettings
from services.email.provider import MailBounced, MailerUnavailable, SimulatedMailer
from services.email.service import build
from services.email.store import InMemoryEmailStore
from tests.unit.services import emitted


def context(**settings) -> EmailContext:
    config = EmailSettings(**settings)
    mailer = SimulatedMailer(flaky_failures=config.flaky_failures, failure_rate=config.failure_rate)
    return EmailContext(InMemoryEmailStore(), mailer, config, InMemoryKeyring())


@pytest.fixture
def ctx() -> EmailContext:
    return context()


def placed(order_id: str, email: str = "ada@example.com") -> Message:
    order = sample_order_placed(email=email)
    return Message.first(order, saga_type="order", saga_key=order_id, producer="test")


def scheduled(order_id: str) -> Message:
    event = ShipmentScheduled(
        shipment_id="shp-1", carrier="DHL", country_code="DE", scheduled_at=utc_now()
    )
    return Message.first(event, saga_type="order", saga_key=order_id, producer="shipping")


def cancelled(order_id: str) -> Message:
    event = OrderCancelled(reason="payment_declined", cancelled_at=utc_now())
    return Message.first(event, saga_type="order", saga_key=order_id, producer="saga-coordinator")


async def test_a_scheduled_shipment_sends_the_confirmation_once(ctx):
    assert await emitted(handlers.remember_recipient(placed("o1"), ctx)) == []
    [first] = await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    [again] = await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    assert isinstance(first, EmailSent)
    assert first.template == "order_confirmation"
    assert again == first
    assert list(ctx.provider.sent) == ["o1:order_confirmation"]
    assert ctx.provider.attempts["o1:order_confirmation"] == 1
    mail = ctx.provider.sent["o1:order_confirmation"]
    assert mail.to == "ada@example.com"
    assert "o1" in mail.subject
    assert "Ada Lovelace" in mail.body
    [recorded] = await ctx.store.sent("o1")
    assert (recorded.template, recorded.message_id) == ("order_confirmation", first.message_id)


async def test_a_cancelled_order_gets_the_cancellation_notice_once(ctx):
    await emitted(handlers.remember_recipient(placed("o1"), ctx))
    [first] = await emitted(handlers.send_cancellation(cancelled("o1"), ctx))
    [again] = await emitted(handlers.send_cancellation(cancelled("o1"), ctx))
    assert first.template == "order_cancelled"
    assert again == first
    assert "payment declined" in ctx.provider.sent["o1:order_cancelled"].body


async def test_each_template_is_sent_once_for_the_same_order(ctx):
    await emitted(handlers.remember_recipient(placed("o1"), ctx))
    await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    await emitted(handlers.send_cancellation(cancelled("o1"), ctx))
    await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    sent = await ctx.store.sent("o1")
    assert [mail.template for mail in sent] == ["order_cancelled", "order_confirmation"]
    assert len(ctx.provider.sent) == 2


async def test_a_bouncing_mailbox_is_a_permanent_error_and_records_nothing(ctx):
    await emitted(handlers.remember_recipient(placed("o1", "ada@bounce.example"), ctx))
    with pytest.raises(PermanentError) as caught:
        await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    assert isinstance(caught.value, MailBounced)
    assert "ada@" not in str(caught.value)
    assert await ctx.store.sent("o1") == []


async def test_a_flaky_mailbox_fails_transiently_then_is_sent(ctx):
    await emitted(handlers.remember_recipient(placed("o1", "ada@flaky.example"), ctx))
    for _ in range(2):
        with pytest.raises(MailerUnavailable):
            await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    [event] = await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    assert isinstance(event, EmailSent)
    assert ctx.provider.attempts["o1:order_confirmation"] == 3


async def test_flaky_failures_are_configurable():
    ctx = context(flaky_failures=0)
    await emitted(handlers.remember_recipient(placed("o1", "ada@flaky.example"), ctx))
    [event] = await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    assert isinstance(event, EmailSent)


async def test_a_shipment_before_the_order_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"order\.placed not seen"):
        await emitted(handlers.send_confirmation(scheduled("o1"), ctx))


async def test_give_up_hooks_are_registered_and_say_whether_the_failure_was_permanent(ctx):
    confirmation = handlers.router.get("shipment.scheduled")
    cancellation = handlers.router.get("order.cancelled")
    assert confirmation.on_give_up is handlers.confirmation_failed
    assert cancellation.on_give_up is handlers.cancellation_failed

    bounced = MailBounced("the mailbox at bounce.example rejected the message (hard bounce)")
    [failed] = await emitted(confirmation.on_give_up(scheduled("o1"), bounced, ctx))
    assert isinstance(failed, EmailFailed)
    assert (failed.template, failed.permanent) == ("order_confirmation", True)
    assert failed.reason == str(bounced)

    [failed] = await emitted(cancellation.on_give_up(cancelled("o1"), MailerUnavailable(), ctx))
    assert (failed.template, failed.permanent) == ("order_cancelled", False)
    assert failed.reason == "MailerUnavailable"  # an error without a message still says what


async def test_the_address_never_reaches_logs_or_events(ctx, caplog):
    caplog.set_level(logging.DEBUG)
    events = []
    for order_id, email in (("o1", "ada@example.com"), ("o2", "bob@bounce.example")):
        await emitted(handlers.remember_recipient(placed(order_id, email), ctx))
        try:
            events += await emitted(handlers.send_confirmation(scheduled(order_id), ctx))
        except PermanentError as exc:
            events += await emitted(handlers.confirmation_failed(scheduled(order_id), exc, ctx))
    events += await emitted(handlers.send_cancellation(cancelled("o1"), ctx))
    assert caplog.records
    assert [type(e) for e in events] == [EmailSent, EmailFailed, EmailSent]
    for text in [caplog.text, *(e.model_dump_json() for e in events)]:
        assert "ada@" not in text
        assert "bob@" not in text
    assert "ada@" not in repr(await ctx.store.recipient("o1"))


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("CHOREO_EMAIL_FLAKY_FAILURES", "5")
    monkeypatch.setenv("CHOREO_EMAIL_FAILURE_RATE", "0.1")
    settings = EmailSettings()
    assert (settings.flaky_failures, settings.failure_rate) == (5, 0.1)
    assert EmailSettings.model_fields["flaky_failures"].default == 2


def test_build_declares_the_service():
    service = build(get_settings(), EmailSettings())
    assert service.name == SERVICE_NAME == "email"
    assert service.router.event_types == [
        "order.cancelled",
        "order.placed",
        "payment.return_refunded",
        "return.requested",
        "shipment.scheduled",
    ]


async def sealed_placed(ctx: EmailContext, order_id: str, email: str) -> Message:
    order = await seal_personal_data(sample_order_placed(email=email), ctx.keyring)
    return Message.first(order, saga_type="order", saga_key=order_id, producer="test")


async def test_a_sealed_recipient_is_kept_sealed_and_opened_only_to_send(ctx):
    await emitted(handlers.remember_recipient(await sealed_placed(ctx, "o1", "ada@x.example"), ctx))
    recipient = await ctx.store.recipient("o1")
    assert "ada@x.example" not in repr(recipient.email)
    assert is_sealed(recipient.email)
    assert recipient.name is not None
    assert is_sealed(recipient.name)
    [sent] = await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    assert isinstance(sent, EmailSent)
    mail = ctx.provider.sent["o1:order_confirmation"]
    assert mail.to == "ada@x.example"
    assert "Ada Lovelace" in mail.body


async def test_a_forgotten_customer_gets_no_mail_and_the_failure_is_emitted_not_dead_lettered(ctx):
    message = await sealed_placed(ctx, "o1", "ada@x.example")
    await emitted(handlers.remember_recipient(message, ctx))
    assert await ctx.keyring.forget(message.event.customer_id)
    [failed] = await emitted(handlers.send_confirmation(scheduled("o1"), ctx))
    assert failed == EmailFailed(
        template="order_confirmation",
        reason=handlers.ERASED_REASON,
        permanent=True,
        failed_at=failed.failed_at,
    )
    assert ctx.provider.sent == {}
    assert ctx.provider.attempts == {}
