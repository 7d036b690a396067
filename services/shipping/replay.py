"""The carrier during a replay: answers from the log, books and cancels nothing.

:class:`ReplayCarrier` implements :class:`~services.shipping.provider.Carrier` for
``choreo replay shipping``: ``book`` answers what the live carrier answered for the message
being replayed, as the events the live run emitted record it (see
:mod:`events.replay.providers`): the ``shipment.scheduled`` (shipment id, carrier, estimated
delivery) or ``shipment.failed`` (reason) emitted for the charge; ``book_pickup`` likewise
from the ``pickup.scheduled`` or ``pickup.failed`` emitted for the approval. ``cancel`` and
``cancel_pickup`` do nothing: the live cancellation happened.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.catalog import ShipmentFailed, ShipmentScheduled
from contracts.parts import Address, ReservedItem
from contracts.returns import PickupFailed, PickupScheduled
from events.replay.providers import recorded
from services.shipping.provider import Booked, PickupBooked, Refused


class ReplayCarrier:
    """A :class:`~services.shipping.provider.Carrier` that replays the live answers."""

    async def book(
        self, *, reference: str, address: Address, items: Sequence[ReservedItem]
    ) -> Booked | Refused:
        outcome = recorded(ShipmentScheduled, ShipmentFailed)
        if isinstance(outcome, ShipmentScheduled):
            return Booked(outcome.shipment_id, outcome.carrier, outcome.estimated_delivery)
        assert isinstance(outcome, ShipmentFailed)
        return Refused(outcome.reason)

    async def cancel(self, *, shipment_id: str) -> None:
        return None

    async def book_pickup(
        self, *, reference: str, address: Address, items: Sequence[ReservedItem]
    ) -> PickupBooked | Refused:
        outcome = recorded(PickupScheduled, PickupFailed)
        if isinstance(outcome, PickupScheduled):
            return PickupBooked(outcome.pickup_id, outcome.carrier)
        assert isinstance(outcome, PickupFailed)
        return Refused(outcome.reason)

    async def cancel_pickup(self, *, pickup_id: str) -> None:
        return None
