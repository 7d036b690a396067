"""The mailer: the :class:`Mailer` protocol and a deterministic simulation.

A mail is sent under an idempotency key (Choreo uses ``<order id>:<template>``): sending the
same key again returns the first message id and sends nothing. A mailbox that rejects mail is
:class:`MailBounced` (a :class:`~events.errors.PermanentError`: the runtime dead-letters at
once); transient trouble is :class:`MailerUnavailable` (a
:class:`~events.errors.ProviderUnavailable`: the runtime retries). Error messages never contain
the address.

:class:`SimulatedMailer` decides by the recipient's domain:

- ``@bounce.example``: bounces.
- ``@flaky.example``: unavailable for the first ``flaky_failures`` calls per key, then sent.
- any other domain: sent.

Every call may also fail transiently with probability ``failure_rate``.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from events.errors import PermanentError, ProviderUnavailable

BOUNCE_DOMAIN = "bounce.example"
FLAKY_DOMAIN = "flaky.example"


class MailBounced(PermanentError):
    """The recipient's mailbox rejects mail; sending again cannot help."""


class MailerUnavailable(ProviderUnavailable):
    """The mailer could not take the mail now; the same call may succeed later."""


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A mail the simulated mailer accepted."""

    message_id: str
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    """What the email handlers need from a mail provider."""

    async def send(self, *, idempotency_key: str, to: str, subject: str, body: str) -> str:
        """Send once per key; returns the provider's message id (the first one on a repeat)."""


class SimulatedMailer:
    """A :class:`Mailer` in memory whose behaviour the recipient's domain decides."""

    def __init__(
        self,
        *,
        sender: str = "orders@choreo.example",
        flaky_failures: int = 2,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.sender = sender
        self.flaky_failures = flaky_failures
        self.failure_rate = failure_rate
        self.rng = rng or random.Random()
        self.attempts: Counter[str] = Counter()
        """Calls per idempotency key."""
        self.sent: dict[str, OutgoingMail] = {}
        """Mails accepted, per idempotency key."""

    async def send(self, *, idempotency_key: str, to: str, subject: str, body: str) -> str:
        self.attempts[idempotency_key] += 1
        previous = self.sent.get(idempotency_key)
        if previous is not None:
            return previous.message_id
        domain = to.rsplit("@", 1)[-1].lower()
        if domain == BOUNCE_DOMAIN:
            raise MailBounced(f"the mailbox at {domain} rejected the message (hard bounce)")
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise MailerUnavailable("mailer unavailable (simulated failure rate)")
        attempt = self.attempts[idempotency_key]
        if domain == FLAKY_DOMAIN and attempt <= self.flaky_failures:
            raise MailerUnavailable(f"mailer unavailable (attempt {attempt})")
        mail = OutgoingMail(f"msg-{uuid.uuid4().hex[:16]}", to, subject, body)
        self.sent[idempotency_key] = mail
        return mail.message_id
