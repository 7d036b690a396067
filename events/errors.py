"""Choreo's errors: one root, and whether retrying can help is data on the error."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pydantic


class ChoreoError(Exception):
    """Root of every error Choreo raises on purpose."""

    retryable: bool = False


class ContractError(ChoreoError):
    """A message breaks the event contract; redelivering it can never succeed."""


class DecodeError(ContractError):
    """The bytes are not a Choreo event: bad framing or not valid Avro for the writer schema."""


class UnknownSchemaError(DecodeError):
    """The bytes name a writer schema (by fingerprint) that this reader does not know."""


class ValidationError(ContractError):
    """The event decodes but breaks a rule of its model (e.g. a negative quantity)."""


class HeaderMismatchError(ContractError):
    """A record's ``event_type`` header names another type than its value holds: it would be
    routed to a handler that did not ask for it."""


class HandlerError(ChoreoError):
    """A handler failed while processing an event."""


class TransientError(HandlerError):
    """A failure that may pass on retry (a timeout, a flaky provider)."""

    retryable = True


class ProviderUnavailable(TransientError):
    """An external provider (a payment gateway, a carrier, a mailer, a CRM) could not answer:
    it said so, or it did not answer in time. Retried like any transient error, and counted
    against the provider's circuit breaker (:mod:`events.breakers`)."""


class ProviderDeferred(TransientError):
    """The provider was not called: its circuit breaker is open, or it is busy (its bulkhead
    is full, or a half-open probe is in flight). The message waits ``retry_after_s`` in the
    retry queue without spending one of its attempts: the provider is at fault, not it.

    Attributes:
        provider: the provider's name (``gateway``, ``carrier``, ...).
        retry_after_s: how long the message should wait before it is tried again.
    """

    def __init__(self, provider: str, retry_after_s: float, reason: str) -> None:
        super().__init__(f"provider {provider} {reason}; retry in {retry_after_s:.2f}s")
        self.provider = provider
        self.retry_after_s = retry_after_s
        self.reason = reason


class NotReadyError(TransientError):
    """What the handler needs has not arrived yet (e.g. the order's `order.placed` on another
    topic). Retried like any transient error, but with a longer budget: the wait is for the
    rest of the system, not for a flaky provider."""

    max_attempts = 30


class PermanentError(HandlerError):
    """A failure that retrying will not fix; the message goes to the dead-letter topic."""


class StackError(ChoreoError):
    """The local infrastructure could not be installed, started or reached."""


START_THE_LOCAL_STACK = " Is it running? `choreo stack up` starts the local stack."
"""What an error about the local stack's own Kafka or PostgreSQL not answering ends with."""


def field_problems(exc: pydantic.ValidationError, whole: str) -> str:
    """One line naming each invalid field of a model, e.g. ``items.0.quantity: must be >= 1``
    (``whole``: what an error of the model itself is named by)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg']}" for err in exc.errors()
    )
