"""The payment gateway: the :class:`PaymentGateway` protocol and a deterministic simulation.

A gateway charges under an idempotency key (Choreo uses the order id): calling ``charge`` again
with the same key never moves money twice, it answers with the first result. Refunds, whole
(the order's compensation) or part (a return, keyed by the return id), are idempotent alike.
Transient trouble is raised as :class:`GatewayUnavailable` (a
:class:`~events.errors.ProviderUnavailable`, so the runtime retries); a refused card is a normal
answer, :class:`Declined`.

:class:`SimulatedGateway` reacts to the card token:

- ``tok_declined``: declined with reason ``card_declined``.
- ``tok_flaky``: unavailable for the first ``flaky_failures`` calls per key, then charges
  (counted in ``shared_calls`` when given, so that replicas of payment share one gateway;
  other cards' calls are counted in the process).
- ``tok_timeout``: never answers (the caller's timeout must fire); nothing is charged.
- ``tok_slow``: charges at once but answers after ``slow_delay_s`` seconds; a caller that gave
  up early finds the charge when it retries with the same key.
- any other token: charged.

Every call may also fail transiently with probability ``failure_rate``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Protocol

from events.errors import ProviderUnavailable
from services.payment.gateway_calls import GatewayCalls

DECLINED_TOKEN = "tok_declined"
FLAKY_TOKEN = "tok_flaky"
TIMEOUT_TOKEN = "tok_timeout"
SLOW_TOKEN = "tok_slow"
CARD_DECLINED = "card_declined"


class GatewayUnavailable(ProviderUnavailable):
    """The gateway could not process the call now; the same call may succeed later."""


@dataclass(frozen=True, slots=True)
class Charged:
    """Money was taken; ``attempt`` is the call (from 1) under the key that got this answer."""

    payment_id: str
    amount_minor: int
    currency: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Declined:
    """The card was refused; retrying the same card will not help."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refunded:
    """Money was given back."""

    payment_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class PartRefunded:
    """Part of a charge was given back (a return's refund)."""

    refund_id: str
    payment_id: str
    amount_minor: int
    currency: str


class PaymentGateway(Protocol):
    """What the payment handlers need from a payment provider."""

    async def charge(
        self, *, idempotency_key: str, amount_minor: int, currency: str, token: str
    ) -> Charged | Declined:
        """Charge the card once per key; a repeated key returns the first outcome."""

    async def refund(
        self, *, idempotency_key: str, payment_id: str | None, amount_minor: int, currency: str
    ) -> Refunded | None:
        """Refund ``payment_id`` (or, when None, whatever was charged under the key) once.

        Returns None when there is nothing to refund.
        """

    async def refund_part(
        self, *, idempotency_key: str, payment_id: str, amount_minor: int, currency: str
    ) -> PartRefunded:
        """Give back ``amount_minor`` of the charge ``payment_id`` once per key (Choreo uses the
        return id); a repeated key returns the first refund."""


class SimulatedGateway:
    """A :class:`PaymentGateway` whose behaviour the card token decides.

    Its outcomes live in memory; the calls per key that decide ``tok_flaky`` are counted in
    ``shared_calls`` when given (:mod:`services.payment.gateway_calls`), else in memory, as
    every other card's are.
    """

    def __init__(
        self,
        *,
        flaky_failures: int = 2,
        slow_delay_s: float = 1.5,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
        shared_calls: GatewayCalls | None = None,
    ) -> None:
        self.shared_calls = shared_calls
        self.flaky_failures = flaky_failures
        self.slow_delay_s = slow_delay_s
        self.failure_rate = failure_rate
        self.rng = rng or random.Random()
        self.attempts: Counter[str] = Counter()
        """Charge calls this process made per idempotency key."""
        self.charges: dict[str, Charged | Declined] = {}
        """The outcome per key: money moved at most once per key."""
        self.refunds: dict[str, Refunded] = {}
        """Refunds per key: money given back at most once per key."""
        self.part_refunds: dict[str, PartRefunded] = {}
        """Partial refunds per key: money given back at most once per key."""

    def _maybe_fail(self) -> None:
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise GatewayUnavailable("payment gateway unavailable (simulated failure rate)")

    async def charge(
        self, *, idempotency_key: str, amount_minor: int, currency: str, token: str
    ) -> Charged | Declined:
        self.attempts[idempotency_key] += 1
        attempt = self.attempts[idempotency_key]
        if self.shared_calls is not None and token == FLAKY_TOKEN:
            # Only a flaky card's answer depends on the count: other cards' calls are not
            # counted where the replicas share it (a statement for every charge).
            attempt = await self.shared_calls.count(idempotency_key)
        previous = self.charges.get(idempotency_key)
        if previous is not None:
            # An idempotent replay answers at once with the first outcome.
            return replace(previous, attempt=attempt) if isinstance(previous, Charged) else previous
        if token == TIMEOUT_TOKEN:
            await asyncio.Event().wait()  # never set: the gateway never answers
        self._maybe_fail()
        if token == FLAKY_TOKEN and attempt <= self.flaky_failures:
            raise GatewayUnavailable(f"payment gateway unavailable (attempt {attempt})")
        outcome: Charged | Declined
        if token == DECLINED_TOKEN:
            outcome = Declined(CARD_DECLINED)
        else:
            outcome = Charged(f"pay-{uuid.uuid4().hex[:16]}", amount_minor, currency, attempt)
        self.charges[idempotency_key] = outcome
        if token == SLOW_TOKEN:
            # The money moved already; only the answer is late.
            await asyncio.sleep(self.slow_delay_s)
        return outcome

    async def refund(
        self, *, idempotency_key: str, payment_id: str | None, amount_minor: int, currency: str
    ) -> Refunded | None:
        done = self.refunds.get(idempotency_key)
        if done is not None:
            return done
        self._maybe_fail()
        charged = self.charges.get(idempotency_key)
        if isinstance(charged, Charged):
            refunded = Refunded(charged.payment_id, charged.amount_minor, charged.currency)
        elif payment_id is not None:
            # A charge this simulation no longer remembers (the process restarted).
            refunded = Refunded(payment_id, amount_minor, currency)
        else:
            return None
        self.refunds[idempotency_key] = refunded
        return refunded

    async def refund_part(
        self, *, idempotency_key: str, payment_id: str, amount_minor: int, currency: str
    ) -> PartRefunded:
        done = self.part_refunds.get(idempotency_key)
        if done is not None:
            return done
        self._maybe_fail()
        refunded = PartRefunded(f"rfd-{uuid.uuid4().hex[:16]}", payment_id, amount_minor, currency)
        self.part_refunds[idempotency_key] = refunded
        return refunded
