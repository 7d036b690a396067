"""The mailer during a replay: answers from the log, sends nothing.

:class:`ReplayMailer` implements :class:`~services.email.provider.Mailer` for
``choreo replay email``: ``send`` returns the message id the live mailer returned for the
message being replayed, as the ``email.sent`` the live run emitted records it (see
:mod:`events.replay.providers`). Mails the live run gave up on were dead-lettered and are not
replayed.
"""

from __future__ import annotations

from contracts.catalog import EmailSent
from events.replay.providers import recorded


class ReplayMailer:
    """A :class:`~services.email.provider.Mailer` that replays the live answers."""

    async def send(self, *, idempotency_key: str, to: str, subject: str, body: str) -> str:
        return recorded(EmailSent).message_id
