"""Deterministic replay: what a provider answers when a message is processed a second time.

When a process rebuilds its state from the log (``choreo replay``, :mod:`choreo.replay`), its
handlers run again on the messages they processed before, and nothing may happen twice outside
the process: no second charge, mail or booking. So each service with an external provider has
a *replay provider* (``services/<name>/replay.py``) implementing the same protocol by giving
the answers the live provider gave, as the events the live run emitted for the message record
them (a charge's payment id and attempt are in ``payment.charged``, a mail's message id in
``email.sent``, ...).

The replay driver runs each message inside :func:`replaying`, which names the message and what
the live run emitted for it; replay providers read it with :func:`recorded`. When the log has
no answer (the live run took another path, e.g. because the messages came in another order),
:func:`recorded` raises :class:`ReplayDivergence`, which is retryable: the driver rolls the
message back and tries it again after the order's next message, as the live runtime retries a
message that came too early.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from events.errors import HandlerError
from events.model import Event, Message

E = TypeVar("E", bound=Event)


class ReplayDivergence(HandlerError):
    """A replayed handler needs or produces something the log does not show for the message.

    Retryable: arriving later (after another message of the order), the message may take the
    path it took live.
    """

    retryable = True


@dataclass(frozen=True, slots=True)
class Replayed:
    """The message being replayed and the events the live run emitted when it processed it."""

    cause: Message[Event]
    emitted: tuple[Event, ...]


_current: ContextVar[Replayed | None] = ContextVar("choreo_replayed", default=None)


@contextmanager
def replaying(cause: Message[Event], emitted: Sequence[Event]) -> Iterator[Replayed]:
    """Replay ``cause`` inside the block; ``emitted``: what the live run emitted for it."""
    replayed = Replayed(cause, tuple(emitted))
    token = _current.set(replayed)
    try:
        yield replayed
    finally:
        _current.reset(token)


def current() -> Replayed | None:
    """The message being replayed, or None outside a replay."""
    return _current.get()


def recorded(*types: type[E]) -> E:
    """The first event of one of ``types`` the live run emitted for the message being replayed.

    Raises:
        ReplayDivergence: nothing is being replayed, or the live run emitted no such event.
    """
    replayed = _current.get()
    names = " or ".join(t.event_type for t in types)
    if replayed is None:
        raise ReplayDivergence(f"no message is being replayed; cannot answer with {names}")
    for event in replayed.emitted:
        if isinstance(event, types):
            return event
    raise ReplayDivergence(
        f"the log shows no {names} for {replayed.cause.envelope.event_type}"
        f" {replayed.cause.envelope.event_id} of order {replayed.cause.saga_key}"
    )
