"""Sample events of the returns flow, and one return per path of the returns saga.

A return names an order; the scenarios return items of the sample orders of
:mod:`contracts.samples` (``happy`` of the happy order, ``unpaid`` of the declined one). The
triggers are deterministic and documented in the README: a pickup address the carrier does not
serve, an item declared damaged, an order that was never charged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.parts import Address, ReservedItem
from contracts.returns import (
    InventoryRestocked,
    InventoryRestockRefused,
    InventoryUnstock,
    InventoryUnstocked,
    ItemCondition,
    PaymentReturnRefundDeclined,
    PaymentReturnRefunded,
    PickupCancel,
    PickupCancelled,
    PickupFailed,
    PickupScheduled,
    ReturnApprovalRequested,
    ReturnApproved,
    ReturnCancelled,
    ReturnCompleted,
    ReturnedItem,
    ReturnNeedsAttention,
    ReturnRejected,
    ReturnRequested,
)
from events.model import Event, utc_now

T0 = datetime(2025, 3, 20, 14, 2, 7, 250_000, tzinfo=UTC)

PICKUP = Address(
    recipient="Ada Lovelace",
    line1="12 Analytical Way",
    city="Berlin",
    postal_code="10115",
    country_code="DE",
)

RETURN_EXAMPLES: dict[str, Event] = {
    e.event_type: e
    for e in [
        ReturnRequested(
            order_id="ord-1",
            customer_id="cust-1",
            customer_email="ada@example.com",
            items=(ReturnedItem(sku="SKU-1", quantity=1, unit_price_minor=1_250),),
            refund_minor=1_250,
            currency="EUR",
            pickup_address=PICKUP,
            reason="wrong colour",
            requested_at=T0,
        ),
        ReturnApprovalRequested(
            refund_minor=250_000,
            currency="EUR",
            threshold_minor=100_000,
            requested_at=T0,
            expires_at=T0.replace(hour=15),
        ),
        ReturnApproved(approved_by="policy:auto", reason="below threshold", approved_at=T0),
        ReturnRejected(rejected_by="ops-7", reason="outside the return window", rejected_at=T0),
        ReturnCompleted(completed_at=T0, notes=("confirmation email failed: mailbox full",)),
        ReturnCancelled(reason="inspection_failed", detail="SKU-1 damaged", cancelled_at=T0),
        ReturnNeedsAttention(step="pickup", reason="pickup.cancel unanswered", detected_at=T0),
        PickupScheduled(pickup_id="pck-1", carrier="DHL", country_code="DE", scheduled_at=T0),
        PickupFailed(reason="country not served", country_code="AQ", failed_at=T0),
        PickupCancel(pickup_id="pck-1", reason="return cancelled", requested_at=T0),
        PickupCancelled(pickup_id="pck-1", cancelled_at=T0),
        InventoryRestocked(
            restock_id="rst-1", items=(ReservedItem(sku="SKU-1", quantity=1),), restocked_at=T0
        ),
        InventoryRestockRefused(reason="damaged", skus=("SKU-1",), refused_at=T0),
        InventoryUnstock(reason="refund_declined", requested_at=T0),
        InventoryUnstocked(restock_id="rst-1", unstocked_at=T0),
        PaymentReturnRefunded(
            refund_id="rfd-1",
            payment_id="pay-1",
            amount_minor=1_250,
            currency="EUR",
            refunded_at=T0,
        ),
        PaymentReturnRefundDeclined(reason="no_charge", refundable_minor=0, declined_at=T0),
    ]
}
"""One valid example of every returns event and command, at a fixed time."""

RETURN_SCENARIOS: dict[str, str] = {
    "happy": "returns a mug of the happy order: pickup, restock, partial refund, confirmation",
    "large": "returns the large order's watch (refund >= threshold): waits for a person",
    "unpickable": "pickup address in AQ: no carrier collects; cancelled (pickup_failed)",
    "damaged": "an item declared damaged: inspection refuses it; pickup cancelled",
    "unpaid": "items of the declined order: nothing to refund; restock undone, pickup cancelled",
}
"""Each path of the returns saga, with the order scenario whose order it returns items of."""

RETURN_OF: dict[str, str] = {
    "happy": "happy",
    "large": "large",
    "unpickable": "happy",
    "damaged": "happy",
    "unpaid": "declined",
}
"""Return scenario → the order scenario (:data:`contracts.samples.SCENARIOS`) it returns."""


def sample_return_requested(
    order_id: str,
    *,
    items: tuple[tuple[str, int, int], ...] = (("SKU-RED-MUG", 1, 1250),),
    condition: ItemCondition = "unopened",
    country_code: str = "DE",
    email: str = "ada@example.com",
) -> ReturnRequested:
    """A valid return of ``order_id``; ``items`` are (sku, quantity, unit price in cents)."""
    returned = tuple(
        ReturnedItem(sku=s, quantity=q, unit_price_minor=p, condition=condition)
        for s, q, p in items
    )
    return ReturnRequested(
        order_id=order_id,
        customer_id="cust-0001",
        customer_email=email,
        items=returned,
        refund_minor=sum(i.quantity * i.unit_price_minor for i in returned),
        currency="EUR",
        pickup_address=PICKUP.model_copy(update={"country_code": country_code}),
        reason="changed my mind",
        requested_at=utc_now(),
    )


def scenario_return(name: str, order_id: str) -> ReturnRequested:
    """The sample return of scenario ``name`` (see :data:`RETURN_SCENARIOS`) of ``order_id``,
    an order of scenario ``RETURN_OF[name]``."""
    if name in ("happy", "unpaid"):
        return sample_return_requested(order_id)
    if name == "large":
        return sample_return_requested(order_id, items=(("SKU-GOLD-WATCH", 1, 250_000),))
    if name == "unpickable":
        return sample_return_requested(order_id, country_code="AQ")
    if name == "damaged":
        return sample_return_requested(order_id, condition="damaged")
    raise KeyError(f"unknown return scenario {name!r}; one of: {', '.join(RETURN_SCENARIOS)}")
