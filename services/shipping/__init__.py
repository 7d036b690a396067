"""Shipping: books a carrier for a paid order, and cancels the booking when the saga compensates.

Reacts to:
    ``order.placed``: remember the shipping address and the items; emits nothing.
    ``payment.charged``: book a carrier, once per order → ``shipment.scheduled``, or
    ``shipment.failed`` when the destination country is not served.
    ``shipment.cancel`` (compensation): cancel the booking if there is one →
    ``shipment.cancelled`` (always; ``shipment_id`` None when nothing was booked).

And in the returns saga (:mod:`services.shipping.returns`, keyed by the return id):
    ``return.requested``: remember the pickup address and the items; emits nothing.
    ``return.approved``: book a collection, once per return → ``pickup.scheduled``, or
    ``pickup.failed`` when the carrier does not serve the country.
    ``pickup.cancel`` (compensation): cancel the collection if there is one →
    ``pickup.cancelled`` (always; ``pickup_id`` None when nothing was booked).

Addresses are personal data: they are stored as they arrive, sealed
(:mod:`events.personal_data`), opened only to hand them to the carrier, and never logged. A
forgotten customer's booking (or pickup) fails as a refused one does.
"""

from __future__ import annotations

from contracts.catalog import ShipmentCancelled, ShipmentFailed, ShipmentScheduled
from contracts.returns import PickupCancelled, PickupFailed, PickupScheduled
from events.process import ProcessSpec

SERVICE_NAME = "shipping"

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="services.shipping.service:build",
    replay_builder="services.shipping.service:build_for_replay",
    produces=(
        ShipmentScheduled,
        ShipmentFailed,
        ShipmentCancelled,
        PickupScheduled,
        PickupFailed,
        PickupCancelled,
    ),
)
"""The shipping process, as :mod:`choreo.registry` lists it."""
