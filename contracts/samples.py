"""Sample events and orders: one valid example of every event, and one order per saga path.

For `make run`'s demo traffic, the CLI's `--sample`, the benchmarks and tests.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.catalog import (
    CrmCustomerUpdated,
    EmailFailed,
    EmailSent,
    InventoryRelease,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    OrderApprovalRequested,
    OrderApproved,
    OrderCancelled,
    OrderCompleted,
    OrderNeedsAttention,
    OrderPlaced,
    OrderRejected,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefund,
    PaymentRefunded,
    ShipmentCancel,
    ShipmentCancelled,
    ShipmentFailed,
    ShipmentScheduled,
)
from contracts.parts import Address, LineItem, ReservedItem, Shortage
from contracts.return_samples import RETURN_EXAMPLES
from events.model import Event, utc_now


def sample_order_placed(
    *,
    skus: tuple[tuple[str, int, int], ...] = (("SKU-RED-MUG", 2, 1250), ("SKU-TEA-BOX", 1, 899)),
    payment_token: str = "tok_visa",
    country_code: str = "DE",
    email: str = "ada@example.com",
) -> OrderPlaced:
    """A valid order; ``skus`` are (sku, quantity, unit price in cents)."""
    items = tuple(LineItem(sku=s, quantity=q, unit_price_minor=p) for s, q, p in skus)
    return OrderPlaced(
        customer_id="cust-0001",
        customer_email=email,
        customer_name="Ada Lovelace",
        items=items,
        total_minor=sum(i.quantity * i.unit_price_minor for i in items),
        currency="EUR",
        shipping_address=Address(
            recipient="Ada Lovelace",
            line1="12 Analytical Way",
            city="Berlin",
            postal_code="10115",
            country_code=country_code,
        ),
        payment_token=payment_token,
        placed_at=utc_now(),
    )


# One valid example of every event and command of the catalog, at a fixed time.
T0 = datetime(2025, 3, 14, 9, 26, 53, 589_000, tzinfo=UTC)
"""An instant at millisecond precision, the resolution of timestamp-millis."""

ADDRESS = Address(
    recipient="Ada Lovelace",
    line1="12 St James's Square",
    line2="Flat 3",
    city="London",
    postal_code="SW1Y 4JH",
    country_code="GB",
)
ITEMS = (ReservedItem(sku="SKU-1", quantity=2), ReservedItem(sku="SKU-2", quantity=1))

EXAMPLES: dict[str, Event] = {
    e.event_type: e
    for e in [
        OrderPlaced(
            customer_id="cust-1",
            customer_email="ada@example.com",
            items=(
                LineItem(sku="SKU-1", quantity=2, unit_price_minor=1_250),
                LineItem(sku="SKU-2", quantity=1, unit_price_minor=99),
            ),
            total_minor=2_599,
            currency="EUR",
            shipping_address=ADDRESS,
            payment_token="tok_visa",
            placed_at=T0,
            customer_name="Ada",
            channel="mobile",
        ),
        OrderApprovalRequested(
            total_minor=250_000,
            currency="EUR",
            threshold_minor=100_000,
            requested_at=T0,
            expires_at=T0.replace(hour=10),
        ),
        OrderApproved(approved_by="ops-7", reason="known customer", approved_at=T0),
        OrderRejected(rejected_by="saga-coordinator", reason="approval_timeout", rejected_at=T0),
        OrderCompleted(completed_at=T0, notes=("gift wrap", "leave at door")),
        OrderCancelled(reason="payment_declined", detail="insufficient funds", cancelled_at=T0),
        OrderNeedsAttention(step="payment.refund", reason="refund failed 5 times", detected_at=T0),
        InventoryReserved(reservation_id="res-1", items=ITEMS, reserved_at=T0),
        InventoryReservationFailed(
            reason="out_of_stock",
            unavailable=(Shortage(sku="SKU-1", requested=2, available=0),),
        ),
        InventoryRelease(reason="payment_declined", requested_at=T0),
        InventoryReleased(reservation_id="res-1", released_at=T0),
        PaymentCharged(
            payment_id="pay-1", amount_minor=2_599, currency="EUR", charged_at=T0, attempt=3
        ),
        PaymentDeclined(reason="card_expired", declined_at=T0),
        PaymentRefund(
            payment_id="pay-1",
            amount_minor=2_599,
            currency="EUR",
            reason="shipment_failed",
            requested_at=T0,
        ),
        PaymentRefunded(payment_id="pay-1", amount_minor=2_599, currency="EUR", refunded_at=T0),
        ShipmentScheduled(
            shipment_id="shp-1",
            carrier="DHL",
            country_code="GB",
            estimated_delivery=T0.replace(day=17),
            scheduled_at=T0,
        ),
        ShipmentFailed(reason="country not served", country_code="KP", failed_at=T0),
        ShipmentCancel(shipment_id="shp-1", reason="order cancelled", requested_at=T0),
        ShipmentCancelled(shipment_id="shp-1", cancelled_at=T0),
        CrmCustomerUpdated(
            customer_id="cust-1",
            orders_count=4,
            lifetime_value_minor=12_345,
            currency="EUR",
            updated_at=T0,
        ),
        EmailSent(template="order_confirmation", message_id="msg-1", sent_at=T0),
        EmailFailed(
            template="order_cancelled", reason="mailbox full", permanent=False, failed_at=T0
        ),
    ]
} | RETURN_EXAMPLES


# --------------------------------------------------------------------------- scenarios
# Sample orders that drive each path of the order saga through the simulated providers. The
# triggers are deterministic and documented in the README: a payment token, a SKU with little
# stock, a destination the carrier does not serve, an e-mail domain that bounces.

SCENARIOS: dict[str, str] = {
    "happy": "completes: reserve, auto-approve, charge, ship, CRM + confirmation email",
    "large": "total >= approval threshold: waits for `choreo orders approve|reject`",
    "out_of_stock": "asks more SKU-RARE-VASE than exist: cancelled (out_of_stock)",
    "declined": "token tok_declined: payment declined, stock released, cancelled",
    "flaky": "token tok_flaky: payment fails transiently, is retried, completes",
    "timeout": "token tok_timeout: the gateway never answers; payment deadline compensates",
    "unshippable": "ships to AQ: shipment fails; refund, then release; cancelled",
    "bounce": "e-mail at bounce.example: completes, the email is dead-lettered and noted",
}


def scenario_order(name: str) -> OrderPlaced:
    """The sample order of scenario ``name`` (see :data:`SCENARIOS`)."""
    if name == "happy":
        return sample_order_placed()
    if name == "large":
        return sample_order_placed(skus=(("SKU-GOLD-WATCH", 1, 250_000),))
    if name == "out_of_stock":
        return sample_order_placed(skus=(("SKU-RARE-VASE", 500, 9_900),))
    if name == "declined":
        return sample_order_placed(payment_token="tok_declined")
    if name == "flaky":
        return sample_order_placed(payment_token="tok_flaky")
    if name == "timeout":
        return sample_order_placed(payment_token="tok_timeout")
    if name == "unshippable":
        return sample_order_placed(country_code="AQ")
    if name == "bounce":
        return sample_order_placed(email="nobody@bounce.example")
    raise KeyError(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")
