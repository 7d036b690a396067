"""The external CRM: the :class:`CrmSystem` protocol and a simulation.

Pushing a profile overwrites the CRM's copy, so pushing the same profile twice is harmless.
Transient trouble is raised as :class:`CrmUnavailable` (a
:class:`~events.errors.ProviderUnavailable`, so the runtime retries). :class:`SimulatedCrm` keeps
the last profile per customer and currency and fails a push with probability ``failure_rate``.
"""

from __future__ import annotations

import random
from typing import Protocol

from events.errors import ProviderUnavailable


class CrmUnavailable(ProviderUnavailable):
    """The CRM could not take the update now; the same update may succeed later."""


class CrmSystem(Protocol):
    """What the CRM handlers need from the external CRM."""

    async def push_profile(
        self, *, customer_id: str, currency: str, orders_count: int, lifetime_value_minor: int
    ) -> None:
        """Overwrite the CRM's copy of the customer's profile in ``currency``."""


class SimulatedCrm:
    """A :class:`CrmSystem` in memory."""

    def __init__(self, *, failure_rate: float = 0.0, rng: random.Random | None = None) -> None:
        self.failure_rate = failure_rate
        self.rng = rng or random.Random()
        self.profiles: dict[tuple[str, str], tuple[int, int]] = {}
        """(customer id, currency) → (orders count, lifetime value), as last pushed."""

    async def push_profile(
        self, *, customer_id: str, currency: str, orders_count: int, lifetime_value_minor: int
    ) -> None:
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise CrmUnavailable("CRM unavailable (simulated failure rate)")
        self.profiles[customer_id, currency] = (orders_count, lifetime_value_minor)
