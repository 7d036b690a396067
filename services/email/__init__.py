"""Email: sends the customer the order confirmation and the cancellation notice, once each.

Reacts to:
    ``order.placed``: remember the recipient (address and name); emits nothing.
    ``shipment.scheduled``: send ``order_confirmation`` once per order → ``email.sent``.
    ``order.cancelled``: send ``order_cancelled`` once per order → ``email.sent``.

A mail that bounces (permanent) or keeps failing (transient, retries exhausted) is
dead-lettered by the runtime, and the give-up hook emits ``email.failed`` so the order gets a
note. Addresses are personal data: stored, handed to the mailer, never logged or emitted.
"""

from __future__ import annotations

SERVICE_NAME = "email"
