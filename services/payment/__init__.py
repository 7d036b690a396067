"""Payment: charges an approved order once, and refunds it once when the saga compensates.

Reacts to:
    ``order.placed``: remember the payment intent (amount, currency, card token); emits nothing.
    ``order.approved``: charge the order through the gateway, once per order (the order id is
    the idempotency key) → ``payment.charged`` or ``payment.declined``.
    ``payment.refund`` (compensation): refund the order's charge, once → ``payment.refunded``
    (always; ``payment_id="none"`` and amount 0 when nothing was charged).

Simulated gateway triggers (card token): ``tok_declined`` declines, ``tok_flaky`` fails
transiently for the first attempts, ``tok_timeout`` never answers, ``tok_slow`` answers late.
"""

from __future__ import annotations

from contracts.catalog import PaymentCharged, PaymentDeclined, PaymentRefunded
from events.process import ProcessSpec

SERVICE_NAME = "payment"

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="services.payment.service:build",
    replay_builder="services.payment.service:build_for_replay",
    produces=(PaymentCharged, PaymentDeclined, PaymentRefunded),
)
"""The payment process, as :mod:`choreo.registry` lists it."""
