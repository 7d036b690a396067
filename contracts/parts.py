"""Records nested inside events of more than one domain: line items, addresses, patterns.

Money is an integer amount of minor units (cents) with an ISO 4217 currency code, never a float.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

CURRENCY_PATTERN = r"^[A-Z]{3}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class Part(BaseModel):
    """A record nested inside an event (a line item, an address)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LineItem(Part):
    """One ordered SKU."""

    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1, le=10_000)
    unit_price_minor: int = Field(ge=0, description="Unit price in minor units (cents).")


class ReservedItem(Part):
    """A quantity of one SKU held (or to ship) for an order."""

    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1, le=10_000)


class Shortage(Part):
    """A SKU the warehouse cannot supply in the requested quantity."""

    sku: str = Field(min_length=1)
    requested: int = Field(ge=1, description="Units the order asked for.")
    available: int = Field(ge=0, description="Units in stock when the reservation failed.")

    @model_validator(mode="after")
    def _is_short(self) -> Shortage:
        if self.available >= self.requested:
            raise ValueError(f"{self.sku}: {self.available} available covers {self.requested}")
        return self


class Address(Part):
    """Where an order ships to. Every field but the city, postcode and country is PII."""

    recipient: str = Field(min_length=1)
    line1: str = Field(min_length=1)
    line2: str | None = None
    city: str = Field(min_length=1)
    postal_code: str = Field(min_length=1)
    country_code: str = Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2.")


def money(minor: int, currency: str) -> str:
    """An amount in minor units as the audit trail writes it: ``12.50 EUR``."""
    return f"{minor // 100}.{minor % 100:02d} {currency}".rstrip()
