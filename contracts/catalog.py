"""The event catalog: a pydantic model per event and command, mirroring ``schemas/``.

The Avro schemas in ``schemas/<event_type>/v<N>.avsc`` are the contract; these models are how
code reads and writes it. ``tests/unit/contracts/test_catalog_schemas.py`` proves that every model
agrees with the newest schema of its event type. Money is an integer amount of minor units
(cents) with an ISO 4217 currency code, never a float.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from contracts.parts import (
    COUNTRY_PATTERN,
    CURRENCY_PATTERN,
    Address,
    LineItem,
    ReservedItem,
    Shortage,
    money,
)
from contracts.personal import EMAIL_OR_SEALED_PATTERN, PersonalData, check_personal_data
from contracts.returns import RETURN_EVENTS
from events.catalog import Catalog
from events.model import Event

CancelReason = Literal[
    "out_of_stock",
    "payment_declined",
    "payment_timeout",
    "shipment_failed",
    "approval_rejected",
    "approval_timeout",
]
"""Why an order was cancelled (`order.cancelled.reason`)."""

EmailTemplate = Literal[
    "order_confirmation", "order_cancelled", "approval_requested", "return_confirmation"
]
"""The email templates the email service can render."""

APPROVAL_TIMEOUT = "approval_timeout"
"""`order.rejected.reason` when nobody decided before the approval expired."""


# --------------------------------------------------------------------------- order


class OrderPlaced(Event):
    """A customer placed an order. Starts the order saga."""

    event_type: ClassVar[str] = "order.placed"
    schema_version: ClassVar[int] = 4

    customer_id: str = Field(min_length=1)
    customer_email: str = Field(pattern=EMAIL_OR_SEALED_PATTERN)
    items: tuple[LineItem, ...] = Field(min_length=1)
    total_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    shipping_address: Address
    payment_token: str = Field(min_length=1)
    placed_at: datetime
    customer_name: str | None = None
    channel: str = "web"
    personal_data: PersonalData = "plain"

    @model_validator(mode="after")
    def _total_matches_items(self) -> OrderPlaced:
        expected = sum(item.quantity * item.unit_price_minor for item in self.items)
        if self.total_minor != expected:
            raise ValueError(
                f"total_minor is {self.total_minor} but the items add up to {expected}"
            )
        a = self.shipping_address
        check_personal_data(
            self.personal_data,
            (self.customer_email, self.customer_name, a.recipient, a.line1, a.line2),
        )
        return self

    def summary(self) -> str:
        items = sum(item.quantity for item in self.items)
        total = money(self.total_minor, self.currency)
        return f"{items} item(s), total {total}, ship to {self.shipping_address.country_code}"


class OrderApprovalRequested(Event):
    """The order total is above the auto-approval threshold; a human must approve it."""

    event_type: ClassVar[str] = "order.approval_requested"
    schema_version: ClassVar[int] = 2

    total_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    threshold_minor: int = Field(ge=0, description="Largest total approved without a human.")
    requested_at: datetime
    expires_at: datetime = Field(description="Unanswered by then, the order is rejected.")

    @model_validator(mode="after")
    def _expires_after_request(self) -> OrderApprovalRequested:
        if self.expires_at <= self.requested_at:
            raise ValueError("expires_at must be after requested_at")
        return self

    def summary(self) -> str:
        return f"total {money(self.total_minor, self.currency)} needs approval"


class OrderApproved(Event):
    """A human approved an order that needed approval."""

    event_type: ClassVar[str] = "order.approved"
    schema_version: ClassVar[int] = 2

    approved_by: str = Field(min_length=1)
    reason: str | None = None
    approved_at: datetime

    def summary(self) -> str:
        return f"approved by {self.approved_by}"


class OrderRejected(Event):
    """An order that needed approval was rejected, by a human or by the approval timeout."""

    event_type: ClassVar[str] = "order.rejected"
    schema_version: ClassVar[int] = 2

    rejected_by: str = Field(min_length=1)
    reason: str = Field(
        min_length=1, description=f"Free text; `{APPROVAL_TIMEOUT}` when rejected by timeout."
    )
    rejected_at: datetime

    def summary(self) -> str:
        return f"rejected by {self.rejected_by}: {self.reason}"


class OrderCompleted(Event):
    """Every step of the order saga succeeded. Ends the saga."""

    event_type: ClassVar[str] = "order.completed"
    schema_version: ClassVar[int] = 2

    completed_at: datetime
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        return "completed" + (f" ({'; '.join(self.notes)})" if self.notes else "")


class OrderCancelled(Event):
    """The order saga failed and was compensated. Ends the saga."""

    event_type: ClassVar[str] = "order.cancelled"
    schema_version: ClassVar[int] = 2

    reason: CancelReason
    detail: str | None = None
    cancelled_at: datetime

    def summary(self) -> str:
        return f"cancelled: {self.reason}"


class OrderNeedsAttention(Event):
    """The saga is stuck (e.g. a compensation keeps failing); an operator must step in."""

    event_type: ClassVar[str] = "order.needs_attention"
    schema_version: ClassVar[int] = 2

    step: str = Field(min_length=1, description="The saga step that is stuck.")
    reason: str = Field(min_length=1)
    detected_at: datetime

    def summary(self) -> str:
        return f"needs attention at {self.step}: {self.reason}"


# --------------------------------------------------------------------------- inventory


class InventoryReserved(Event):
    """Stock for every line of the order is held."""

    event_type: ClassVar[str] = "inventory.reserved"
    schema_version: ClassVar[int] = 2

    reservation_id: str = Field(min_length=1)
    items: tuple[ReservedItem, ...] = Field(min_length=1)
    reserved_at: datetime

    def summary(self) -> str:
        return f"reserved {sum(item.quantity for item in self.items)} unit(s)"


class InventoryReservationFailed(Event):
    """Stock could not be reserved; nothing is held."""

    event_type: ClassVar[str] = "inventory.reservation_failed"
    schema_version: ClassVar[int] = 2

    reason: str = Field(min_length=1)
    unavailable: tuple[Shortage, ...]

    def summary(self) -> str:
        return f"not reserved: {self.reason}"


class InventoryRelease(Event):
    """Command: release the stock reserved for the order (compensation)."""

    event_type: ClassVar[str] = "inventory.release"
    schema_version: ClassVar[int] = 2

    reason: str = Field(min_length=1)
    requested_at: datetime


class InventoryReleased(Event):
    """The stock reserved for the order is available again."""

    event_type: ClassVar[str] = "inventory.released"
    schema_version: ClassVar[int] = 2

    reservation_id: str | None = Field(
        default=None, description="None when there was no reservation to release."
    )
    released_at: datetime


# --------------------------------------------------------------------------- payment


class PaymentCharged(Event):
    """The customer was charged."""

    event_type: ClassVar[str] = "payment.charged"
    schema_version: ClassVar[int] = 2

    payment_id: str = Field(min_length=1)
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    charged_at: datetime
    attempt: int = Field(default=1, ge=1, description="Which attempt succeeded, from 1.")

    def summary(self) -> str:
        return f"charged {money(self.amount_minor, self.currency)} (attempt {self.attempt})"


class PaymentDeclined(Event):
    """The payment provider refused the charge."""

    event_type: ClassVar[str] = "payment.declined"
    schema_version: ClassVar[int] = 2

    reason: str = Field(min_length=1)
    declined_at: datetime

    def summary(self) -> str:
        return f"failed: {self.reason}"


class PaymentRefund(Event):
    """Command: refund a charge (compensation)."""

    event_type: ClassVar[str] = "payment.refund"
    schema_version: ClassVar[int] = 2

    payment_id: str | None = Field(default=None, description="None: the order's charge, if any.")
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    reason: str = Field(min_length=1)
    requested_at: datetime


class PaymentRefunded(Event):
    """A charge was refunded."""

    event_type: ClassVar[str] = "payment.refunded"
    schema_version: ClassVar[int] = 2

    payment_id: str = Field(min_length=1)
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    refunded_at: datetime

    def summary(self) -> str:
        return f"refunded {money(self.amount_minor, self.currency)}"


# --------------------------------------------------------------------------- shipment


class ShipmentScheduled(Event):
    """A carrier is booked for the order."""

    event_type: ClassVar[str] = "shipment.scheduled"
    schema_version: ClassVar[int] = 2

    shipment_id: str = Field(min_length=1)
    carrier: str = Field(min_length=1)
    country_code: str = Field(pattern=COUNTRY_PATTERN)
    estimated_delivery: datetime | None = None
    scheduled_at: datetime

    def summary(self) -> str:
        return f"scheduled with {self.carrier} to {self.country_code}"


class ShipmentFailed(Event):
    """No carrier could be booked (e.g. the country is not served)."""

    event_type: ClassVar[str] = "shipment.failed"
    schema_version: ClassVar[int] = 2

    reason: str = Field(min_length=1)
    country_code: str = Field(pattern=COUNTRY_PATTERN)
    failed_at: datetime

    def summary(self) -> str:
        return f"failed: {self.reason}"


class ShipmentCancel(Event):
    """Command: cancel the order's shipment (compensation)."""

    event_type: ClassVar[str] = "shipment.cancel"
    schema_version: ClassVar[int] = 2

    shipment_id: str | None = Field(default=None, description="None: the order's shipment.")
    reason: str = Field(min_length=1)
    requested_at: datetime


class ShipmentCancelled(Event):
    """The order's shipment is cancelled, or there was none to cancel."""

    event_type: ClassVar[str] = "shipment.cancelled"
    schema_version: ClassVar[int] = 2

    shipment_id: str | None = None
    cancelled_at: datetime


# --------------------------------------------------------------------------- crm


class CrmCustomerUpdated(Event):
    """The customer's CRM record now counts the order."""

    event_type: ClassVar[str] = "crm.customer_updated"
    schema_version: ClassVar[int] = 2

    customer_id: str = Field(min_length=1)
    orders_count: int = Field(ge=0)
    lifetime_value_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    updated_at: datetime

    def summary(self) -> str:
        return f"customer now has {self.orders_count} order(s)"


# --------------------------------------------------------------------------- email


class EmailSent(Event):
    """The email provider accepted an email. Carries no address: addresses are PII."""

    event_type: ClassVar[str] = "email.sent"
    schema_version: ClassVar[int] = 2

    template: EmailTemplate
    message_id: str = Field(min_length=1, description="The provider's id of the message.")
    sent_at: datetime

    def summary(self) -> str:
        return f"sent {self.template}"


class EmailFailed(Event):
    """An email could not be sent."""

    event_type: ClassVar[str] = "email.failed"
    schema_version: ClassVar[int] = 2

    template: EmailTemplate
    reason: str = Field(min_length=1)
    permanent: bool = Field(description="True when retrying cannot help (e.g. bad address).")
    failed_at: datetime

    def summary(self) -> str:
        return f"failed: {self.reason}"


CATALOG = Catalog(
    (
        OrderPlaced,
        OrderApprovalRequested,
        OrderApproved,
        OrderRejected,
        OrderCompleted,
        OrderCancelled,
        OrderNeedsAttention,
        InventoryReserved,
        InventoryReservationFailed,
        InventoryRelease,
        InventoryReleased,
        PaymentCharged,
        PaymentDeclined,
        PaymentRefund,
        PaymentRefunded,
        ShipmentScheduled,
        ShipmentFailed,
        ShipmentCancel,
        ShipmentCancelled,
        CrmCustomerUpdated,
        EmailSent,
        EmailFailed,
        *RETURN_EVENTS,
    )
)
"""Every event and command type Choreo knows, in the order of the README's catalog table."""
