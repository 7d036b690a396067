"""The payment gateway during a replay: answers from the log, moves no money.

:class:`ReplayGateway` implements :class:`~services.payment.provider.PaymentGateway` for
``choreo replay payment``: each call answers what the live gateway answered for the message
being replayed, as the events the live run emitted record it (see
:mod:`events.replay.providers`):

- ``charge``: the ``payment.charged`` (payment id, amount, currency, attempt) or
  ``payment.declined`` (reason) emitted for the approval;
- ``refund``: the ``payment.refunded`` emitted for the refund command; ``payment_id="none"``
  there means the gateway had nothing to refund;
- ``refund_part``: the ``payment.return_refunded`` emitted for the return's restock.
"""

from __future__ import annotations

from contracts.catalog import PaymentCharged, PaymentDeclined, PaymentRefunded
from contracts.returns import PaymentReturnRefunded
from events.replay.providers import recorded
from services.payment.handlers import NO_PAYMENT
from services.payment.provider import Charged, Declined, PartRefunded, Refunded


class ReplayGateway:
    """A :class:`~services.payment.provider.PaymentGateway` that replays the live answers."""

    async def charge(
        self, *, idempotency_key: str, amount_minor: int, currency: str, token: str
    ) -> Charged | Declined:
        outcome = recorded(PaymentCharged, PaymentDeclined)
        if isinstance(outcome, PaymentCharged):
            return Charged(
                outcome.payment_id, outcome.amount_minor, outcome.currency, outcome.attempt
            )
        assert isinstance(outcome, PaymentDeclined)
        return Declined(outcome.reason)

    async def refund(
        self, *, idempotency_key: str, payment_id: str | None, amount_minor: int, currency: str
    ) -> Refunded | None:
        refunded = recorded(PaymentRefunded)
        if refunded.payment_id == NO_PAYMENT:
            return None
        return Refunded(refunded.payment_id, refunded.amount_minor, refunded.currency)

    async def refund_part(
        self, *, idempotency_key: str, payment_id: str, amount_minor: int, currency: str
    ) -> PartRefunded:
        refunded = recorded(PaymentReturnRefunded)
        return PartRefunded(
            refunded.refund_id, refunded.payment_id, refunded.amount_minor, refunded.currency
        )
