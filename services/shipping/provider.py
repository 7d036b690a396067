"""The carrier: the :class:`Carrier` protocol and a deterministic simulation.

A booking carries a reference (Choreo uses the order id); booking the same reference again
returns the first booking. A pickup (collecting a return) is booked the same way under the
return id, and refused for the same unserved countries. Transient trouble is raised as
:class:`CarrierUnavailable` (a :class:`~events.errors.ProviderUnavailable`, so the runtime retries);
a destination the carrier does not serve is a normal answer, :class:`Refused`.

:class:`SimulatedCarrier` refuses the countries in ``unserved_countries``, books everything
else with an estimated delivery ``delivery_days`` ahead, and fails any call transiently with
probability ``failure_rate``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from contracts.parts import Address, ReservedItem
from events.errors import ProviderUnavailable
from events.model import utc_now

COUNTRY_NOT_SERVED = "country_not_served"


class CarrierUnavailable(ProviderUnavailable):
    """The carrier could not take the call now; the same call may succeed later."""


@dataclass(frozen=True, slots=True)
class Booked:
    """A carrier will pick the parcel up."""

    shipment_id: str
    carrier: str
    estimated_delivery: datetime | None


@dataclass(frozen=True, slots=True)
class Refused:
    """The carrier will not ship this parcel; retrying will not help."""

    reason: str


@dataclass(frozen=True, slots=True)
class PickupBooked:
    """A carrier will collect the returned items."""

    pickup_id: str
    carrier: str


class Carrier(Protocol):
    """What the shipping handlers need from a carrier."""

    async def book(
        self, *, reference: str, address: Address, items: Sequence[ReservedItem]
    ) -> Booked | Refused:
        """Book a pickup once per reference; a repeated reference returns the first answer."""

    async def cancel(self, *, shipment_id: str) -> None:
        """Cancel a booking; cancelling it again is harmless."""

    async def book_pickup(
        self, *, reference: str, address: Address, items: Sequence[ReservedItem]
    ) -> PickupBooked | Refused:
        """Book a collection once per reference; a repeated reference returns the first
        answer."""

    async def cancel_pickup(self, *, pickup_id: str) -> None:
        """Cancel a collection; cancelling it again is harmless."""


class SimulatedCarrier:
    """A :class:`Carrier` in memory that serves every country but ``unserved_countries``."""

    def __init__(
        self,
        *,
        name: str = "DHL",
        delivery_days: int = 3,
        unserved_countries: Collection[str] = ("AQ",),
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.delivery_days = delivery_days
        self.unserved_countries = frozenset(unserved_countries)
        self.failure_rate = failure_rate
        self.rng = rng or random.Random()
        self.bookings: dict[str, Booked | Refused] = {}
        """The answer per reference."""
        self.cancelled: set[str] = set()
        """Shipment ids whose booking was cancelled."""
        self.pickups: dict[str, PickupBooked | Refused] = {}
        """The answer per pickup reference."""
        self.cancelled_pickups: set[str] = set()
        """Pickup ids whose collection was cancelled."""

    def _maybe_fail(self) -> None:
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise CarrierUnavailable("carrier unavailable (simulated failure rate)")

    async def book(
        self, *, reference: str, address: Address, items: Sequence[ReservedItem]
    ) -> Booked | Refused:
        previous = self.bookings.get(reference)
        if previous is not None:
            return previous
        self._maybe_fail()
        answer: Booked | Refused
        if address.country_code in self.unserved_countries:
            answer = Refused(COUNTRY_NOT_SERVED)
        else:
            eta = utc_now() + timedelta(days=self.delivery_days)
            answer = Booked(f"shp-{uuid.uuid4().hex[:16]}", self.name, eta)
        self.bookings[reference] = answer
        return answer

    async def cancel(self, *, shipment_id: str) -> None:
        self._maybe_fail()
        self.cancelled.add(shipment_id)

    async def book_pickup(
        self, *, reference: str, address: Address, items: Sequence[ReservedItem]
    ) -> PickupBooked | Refused:
        previous = self.pickups.get(reference)
        if previous is not None:
            return previous
        self._maybe_fail()
        answer: PickupBooked | Refused
        if address.country_code in self.unserved_countries:
            answer = Refused(COUNTRY_NOT_SERVED)
        else:
            answer = PickupBooked(f"pck-{uuid.uuid4().hex[:16]}", self.name)
        self.pickups[reference] = answer
        return answer

    async def cancel_pickup(self, *, pickup_id: str) -> None:
        self._maybe_fail()
        self.cancelled_pickups.add(pickup_id)
