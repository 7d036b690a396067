"""Email's returns handlers on the in-memory store and the simulated mailer: the return's
confirmation once per return, bounces and flaky mailboxes, the give-up hook, no address in logs
or events."""

from __future__ import annotations

import logging

import pytest

from contracts.catalog import EmailFailed, EmailSent
from contracts.return_samples import sample_return_requested
from contracts.returns import PaymentReturnRefunded
from events.errors import PermanentError, TransientError
from events.model import Message, utc_now
from services.email import returns
from services.email.provider import MailBounced, MailerUnavailable
from tests.unit.services import emitted
from tests.unit.services.test_email import context


@pytest.fixture
def ctx():
    return context()


def requested(return_id: str, email: str = "ada@example.com") -> Message:
    event = sample_return_requested("ord-1", email=email)
    return Message.first(event, saga_type="return", saga_key=return_id, producer="test")


def refunded(return_id: str) -> Message:
    event = PaymentReturnRefunded(
        refund_id="rfd-1",
        payment_id="pay-1",
        amount_minor=1250,
        currency="EUR",
        refunded_at=utc_now(),
    )
    return Message.first(event, saga_type="return", saga_key=return_id, producer="payment")


async def test_a_refunded_return_gets_its_confirmation_once(ctx):
    assert await emitted(returns.remember_return_recipient(requested("r1"), ctx)) == []
    [first] = await emitted(returns.send_return_confirmation(refunded("r1"), ctx))
    [again] = await emitted(returns.send_return_confirmation(refunded("r1"), ctx))
    assert isinstance(first, EmailSent)
    assert first.template == "return_confirmation"
    assert again == first
    assert ctx.provider.attempts["r1:return_confirmation"] == 1
    mail = ctx.provider.sent["r1:return_confirmation"]
    assert mail.to == "ada@example.com"
    assert "r1" in mail.subject
    assert "12.50 EUR" in mail.body
    [recorded] = await ctx.store.sent("r1")
    assert (recorded.template, recorded.message_id) == ("return_confirmation", first.message_id)


async def test_a_refund_before_the_request_is_known_is_retried(ctx):
    with pytest.raises(TransientError, match=r"return\.requested not seen"):
        await emitted(returns.send_return_confirmation(refunded("r1"), ctx))


async def test_a_bouncing_mailbox_is_permanent_and_the_give_up_hook_tells(ctx):
    await emitted(returns.remember_return_recipient(requested("r1", "ada@bounce.example"), ctx))
    with pytest.raises(PermanentError) as caught:
        await emitted(returns.send_return_confirmation(refunded("r1"), ctx))
    assert isinstance(caught.value, MailBounced)
    assert await ctx.store.sent("r1") == []
    spec = returns.router.get("payment.return_refunded")
    assert spec.on_give_up is returns.return_confirmation_failed
    [failed] = await emitted(spec.on_give_up(refunded("r1"), caught.value, ctx))
    assert isinstance(failed, EmailFailed)
    assert (failed.template, failed.permanent) == ("return_confirmation", True)
    unavailable = MailerUnavailable()
    [failed] = await emitted(returns.return_confirmation_failed(refunded("r1"), unavailable, ctx))
    assert (failed.template, failed.permanent) == ("return_confirmation", False)


async def test_a_flaky_mailbox_fails_transiently_then_is_sent(ctx):
    await emitted(returns.remember_return_recipient(requested("r1", "ada@flaky.example"), ctx))
    for _ in range(2):
        with pytest.raises(MailerUnavailable):
            await emitted(returns.send_return_confirmation(refunded("r1"), ctx))
    [event] = await emitted(returns.send_return_confirmation(refunded("r1"), ctx))
    assert isinstance(event, EmailSent)


async def test_the_address_never_reaches_logs_or_events(ctx, caplog):
    caplog.set_level(logging.DEBUG)
    events = []
    for return_id, email in (("r1", "ada@example.com"), ("r2", "bob@bounce.example")):
        await emitted(returns.remember_return_recipient(requested(return_id, email), ctx))
        try:
            events += await emitted(returns.send_return_confirmation(refunded(return_id), ctx))
        except PermanentError as exc:
            events += await emitted(
                returns.return_confirmation_failed(refunded(return_id), exc, ctx)
            )
    assert caplog.records
    assert [type(e) for e in events] == [EmailSent, EmailFailed]
    for text in [caplog.text, *(e.model_dump_json() for e in events)]:
        assert "ada@" not in text
        assert "bob@" not in text
