"""What a replay provider reads: the message being replayed and what the live run emitted."""

from __future__ import annotations

import pytest

from contracts.catalog import EmailSent, PaymentCharged, PaymentDeclined
from contracts.samples import sample_order_placed
from events.model import Message, utc_now
from events.replay.providers import ReplayDivergence, current, recorded, replaying
from events.retries import is_retryable


def placed() -> Message:
    return Message.first(sample_order_placed(), saga_type="order", saga_key="o1", producer="test")


def test_recorded_answers_with_the_first_event_of_the_asked_types():
    declined = PaymentDeclined(reason="card_declined", declined_at=utc_now())
    sent = EmailSent(template="order_confirmation", message_id="msg-1", sent_at=utc_now())
    cause = placed()
    assert current() is None
    with replaying(cause, [sent, declined]) as replayed:
        assert current() is replayed
        assert replayed.cause is cause
        assert recorded(PaymentCharged, PaymentDeclined) is declined
        assert recorded(EmailSent) is sent
    assert current() is None


def test_no_recorded_answer_is_a_retryable_divergence():
    with replaying(placed(), []), pytest.raises(ReplayDivergence) as caught:
        recorded(PaymentCharged, PaymentDeclined)
    assert "payment.charged or payment.declined" in str(caught.value)
    assert "order o1" in str(caught.value)
    assert is_retryable(caught.value)
    with pytest.raises(ReplayDivergence):
        recorded(EmailSent)  # outside a replay
