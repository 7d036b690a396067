"""Email: sends the customer the order confirmation, the cancellation notice and the return's
refund confirmation, once each.

Reacts to:
    ``order.placed``: remember the recipient (address and name); emits nothing.
    ``shipment.scheduled``: send ``order_confirmation`` once per order → ``email.sent``.
    ``order.cancelled``: send ``order_cancelled`` once per order → ``email.sent``.

And in the returns saga (:mod:`services.email.returns`, keyed by the return id):
    ``return.requested``: remember the recipient; emits nothing.
    ``payment.return_refunded``: send ``return_confirmation`` once per return → ``email.sent``.

A mail that bounces (permanent) or keeps failing (transient, retries exhausted) is
dead-lettered by the runtime, and the give-up hook emits ``email.failed`` so the order (or
return) gets a note. Addresses are personal data: stored as they arrive, sealed
(:mod:`events.personal_data`), opened only to hand them to the mailer, never logged or emitted.
A forgotten customer's mail is not sent: ``email.failed`` (permanent) at once, no dead letter.
"""

from __future__ import annotations

from contracts.catalog import EmailFailed, EmailSent
from events.process import ProcessSpec

SERVICE_NAME = "email"

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="services.email.service:build",
    replay_builder="services.email.service:build_for_replay",
    produces=(EmailSent, EmailFailed),
)
"""The email process, as :mod:`choreo.registry` lists it."""
