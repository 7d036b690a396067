"""The returns flow's events: a customer sends back items of an order and is refunded.

``return.requested`` starts the returns saga (:mod:`sagas.returns`): shipping books a pickup
(``pickup.*``), inventory inspects and restocks what arrives (``inventory.restock*``), payment
refunds part of the order's charge (``payment.return_refund*``) and email confirms
(``email.sent`` with the ``return_confirmation`` template). The saga's key is the return id;
the order it returns items of is a field. Schemas: ``schemas/<event_type>/v1.avsc``
(``return.requested``: v2, with sealed personal data).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from contracts.parts import (
    COUNTRY_PATTERN,
    CURRENCY_PATTERN,
    Address,
    Part,
    ReservedItem,
    money,
)
from contracts.personal import EMAIL_OR_SEALED_PATTERN, PersonalData, check_personal_data
from events.model import Event

ReturnCancelReason = Literal[
    "approval_rejected",
    "approval_timeout",
    "pickup_failed",
    "inspection_failed",
    "refund_declined",
    "refund_timeout",
]
"""Why a return was cancelled (`return.cancelled.reason`)."""

ItemCondition = Literal["unopened", "opened", "damaged"]
"""What the customer says of a returned item; inspection refuses damaged ones."""


class ReturnedItem(Part):
    """A quantity of one SKU of the order, sent back."""

    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1, le=10_000)
    unit_price_minor: int = Field(ge=0, description="Unit price paid, in minor units.")
    condition: ItemCondition = "unopened"


# --------------------------------------------------------------------------- return


class ReturnRequested(Event):
    """A customer asks to return items of an order. Starts the returns saga."""

    event_type: ClassVar[str] = "return.requested"
    schema_version: ClassVar[int] = 2

    order_id: str = Field(min_length=1, description="The order the items were bought with.")
    customer_id: str = Field(min_length=1)
    customer_email: str = Field(pattern=EMAIL_OR_SEALED_PATTERN)
    items: tuple[ReturnedItem, ...] = Field(min_length=1)
    refund_minor: int = Field(ge=0, description="What the customer is owed for the items.")
    currency: str = Field(pattern=CURRENCY_PATTERN)
    pickup_address: Address
    reason: str = Field(min_length=1, description="The customer's words.")
    requested_at: datetime
    personal_data: PersonalData = "plain"

    @model_validator(mode="after")
    def _refund_matches_items(self) -> ReturnRequested:
        expected = sum(item.quantity * item.unit_price_minor for item in self.items)
        if self.refund_minor != expected:
            raise ValueError(
                f"refund_minor is {self.refund_minor} but the items add up to {expected}"
            )
        a = self.pickup_address
        check_personal_data(
            self.personal_data, (self.customer_email, a.recipient, a.line1, a.line2)
        )
        return self

    def summary(self) -> str:  # not the reason: the customer's own words
        items = sum(item.quantity for item in self.items)
        refund, country = money(self.refund_minor, self.currency), self.pickup_address.country_code
        return f"{items} item(s) to return, refund {refund}, pick up in {country}"


class ReturnApprovalRequested(Event):
    """The refund is above the auto-approval threshold; a person must approve the return."""

    event_type: ClassVar[str] = "return.approval_requested"

    refund_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    threshold_minor: int = Field(ge=0, description="Largest refund approved without a person.")
    requested_at: datetime
    expires_at: datetime = Field(description="Unanswered by then, the return is rejected.")

    def summary(self) -> str:
        return f"refund {money(self.refund_minor, self.currency)} needs approval"


class ReturnApproved(Event):
    """The return may go ahead (a person, or the policy below the threshold)."""

    event_type: ClassVar[str] = "return.approved"

    approved_by: str = Field(min_length=1, description="A person, or `policy:auto`.")
    reason: str | None = None
    approved_at: datetime

    def summary(self) -> str:
        return f"approved by {self.approved_by}"


class ReturnRejected(Event):
    """A person (or the approval's timeout) refused the return."""

    event_type: ClassVar[str] = "return.rejected"

    rejected_by: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    rejected_at: datetime

    def summary(self) -> str:
        return f"rejected by {self.rejected_by}: {self.reason}"


class ReturnCompleted(Event):
    """The items are back in stock and the customer refunded."""

    event_type: ClassVar[str] = "return.completed"

    completed_at: datetime
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        return "completed" + (f" ({'; '.join(self.notes)})" if self.notes else "")


class ReturnCancelled(Event):
    """The return was cancelled; whatever had happened is undone."""

    event_type: ClassVar[str] = "return.cancelled"

    reason: ReturnCancelReason
    detail: str | None = None
    cancelled_at: datetime


class ReturnNeedsAttention(Event):
    """A compensation of the return was never acknowledged; a person must look."""

    event_type: ClassVar[str] = "return.needs_attention"

    step: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    detected_at: datetime


# --------------------------------------------------------------------------- pickup (shipping)


class PickupScheduled(Event):
    """A carrier will collect the returned items."""

    event_type: ClassVar[str] = "pickup.scheduled"

    pickup_id: str = Field(min_length=1)
    carrier: str = Field(min_length=1)
    country_code: str = Field(pattern=COUNTRY_PATTERN)
    scheduled_at: datetime

    def summary(self) -> str:
        return f"pickup by {self.carrier} in {self.country_code}"


class PickupFailed(Event):
    """No carrier collects from the pickup address."""

    event_type: ClassVar[str] = "pickup.failed"

    reason: str = Field(min_length=1)
    country_code: str = Field(pattern=COUNTRY_PATTERN)
    failed_at: datetime


class PickupCancel(Event):
    """Command: cancel the return's pickup (compensation)."""

    event_type: ClassVar[str] = "pickup.cancel"

    pickup_id: str | None = Field(default=None, description="None: the return's pickup.")
    reason: str = Field(min_length=1)
    requested_at: datetime


class PickupCancelled(Event):
    """The return's pickup is cancelled, or there was none to cancel."""

    event_type: ClassVar[str] = "pickup.cancelled"

    pickup_id: str | None = None
    cancelled_at: datetime


# --------------------------------------------------------------------------- inventory


class InventoryRestocked(Event):
    """The returned items passed inspection and are back in stock."""

    event_type: ClassVar[str] = "inventory.restocked"

    restock_id: str = Field(min_length=1)
    items: tuple[ReservedItem, ...] = Field(min_length=1)
    restocked_at: datetime

    def summary(self) -> str:
        return f"restocked {sum(item.quantity for item in self.items)} unit(s)"


class InventoryRestockRefused(Event):
    """Inspection refused the returned items (e.g. damaged); nothing was restocked."""

    event_type: ClassVar[str] = "inventory.restock_refused"

    reason: str = Field(min_length=1)
    skus: tuple[str, ...] = Field(min_length=1, description="The SKUs that failed inspection.")
    refused_at: datetime


class InventoryUnstock(Event):
    """Command: take the return's restocked units out of stock again (compensation)."""

    event_type: ClassVar[str] = "inventory.unstock"

    reason: str = Field(min_length=1)
    requested_at: datetime


class InventoryUnstocked(Event):
    """The return's restocked units are out of stock again, or none had been restocked."""

    event_type: ClassVar[str] = "inventory.unstocked"

    restock_id: str | None = None
    unstocked_at: datetime


# --------------------------------------------------------------------------- payment


class PaymentReturnRefunded(Event):
    """Part (or all) of the order's charge was refunded for the return."""

    event_type: ClassVar[str] = "payment.return_refunded"

    refund_id: str = Field(min_length=1)
    payment_id: str = Field(min_length=1, description="The order's charge it refunds from.")
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    refunded_at: datetime

    def summary(self) -> str:
        return f"refunded {money(self.amount_minor, self.currency)}"


class PaymentReturnRefundDeclined(Event):
    """The refund cannot be made: no charge for the order, or more than is left of it."""

    event_type: ClassVar[str] = "payment.return_refund_declined"

    reason: str = Field(min_length=1)
    refundable_minor: int = Field(ge=0, description="What is left to refund of the charge.")
    declined_at: datetime


RETURN_EVENTS: tuple[type[Event], ...] = (
    ReturnRequested,
    ReturnApprovalRequested,
    ReturnApproved,
    ReturnRejected,
    ReturnCompleted,
    ReturnCancelled,
    ReturnNeedsAttention,
    PickupScheduled,
    PickupFailed,
    PickupCancel,
    PickupCancelled,
    InventoryRestocked,
    InventoryRestockRefused,
    InventoryUnstock,
    InventoryUnstocked,
    PaymentReturnRefunded,
    PaymentReturnRefundDeclined,
)
"""The returns flow's event and command types, in the catalog's order."""
