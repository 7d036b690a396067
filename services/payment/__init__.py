"""Payment: charges an approved order once, and refunds it once when the saga compensates.

Reacts to:
    ``order.placed``: remember the payment intent (amount, currency, card token); emits nothing.
    ``order.approved``: charge the order through the gateway, once per order (the order id is
    the idempotency key) → ``payment.charged`` or ``payment.declined``.
    ``payment.refund`` (compensation): refund the order's charge, once → ``payment.refunded``
    (always; ``payment_id="none"`` and amount 0 when nothing was charged).

And in the returns saga (:mod:`services.payment.returns`, keyed by the return id):
    ``return.requested``: remember the order, the amount to refund and the currency.
    ``inventory.restocked``: refund that amount from the order's charge, once per return (the
    return id is the idempotency key) → ``payment.return_refunded``, or
    ``payment.return_refund_declined`` (``no_charge``; ``exceeds_charge`` when more than is
    left of the charge after its refunds; ``currency_mismatch``).

Simulated gateway triggers (card token): ``tok_declined`` declines, ``tok_flaky`` fails
transiently for the first attempts, ``tok_timeout`` never answers, ``tok_slow`` answers late.
"""

from __future__ import annotations

from contracts.catalog import PaymentCharged, PaymentDeclined, PaymentRefunded
from contracts.returns import PaymentReturnRefundDeclined, PaymentReturnRefunded
from events.process import ProcessSpec

SERVICE_NAME = "payment"

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="services.payment.service:build",
    replay_builder="services.payment.service:build_for_replay",
    produces=(
        PaymentCharged,
        PaymentDeclined,
        PaymentRefunded,
        PaymentReturnRefunded,
        PaymentReturnRefundDeclined,
    ),
)
"""The payment process, as :mod:`choreo.registry` lists it."""
