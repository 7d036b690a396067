"""The shipping handlers' settings and context.

Imported by the handlers and by the service definition (``service.py``), so that neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from events.personal_data import Keyring
from services.shipping.provider import Carrier
from services.shipping.store import ShippingStore


class ShippingSettings(BaseSettings):
    """Shipping configuration, read from ``CHOREO_SHIPPING_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_SHIPPING_", extra="ignore", frozen=True)

    unserved_countries: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset({"AQ"}),
        description="Comma-separated ISO 3166-1 alpha-2 codes the carrier does not ship to.",
    )
    carrier_name: str = Field(default="DHL", description="Name of the simulated carrier.")
    delivery_days: int = Field(
        default=3, ge=0, description="Days from booking to the estimated delivery."
    )
    carrier_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a carrier call may take before it is retried."
    )
    failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Probability that any carrier call fails transiently."
    )

    @field_validator("unserved_countries", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(c.strip().upper() for c in value.split(",") if c.strip())
        return value


@dataclass(frozen=True, slots=True)
class ShippingContext:
    """What a shipping handler works with, bound to the delivery's transaction."""

    store: ShippingStore
    provider: Carrier
    config: ShippingSettings
    keyring: Keyring
    """Customers' data keys: addresses arrive sealed, opened to book a carrier."""
