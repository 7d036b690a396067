"""The payment handlers' settings and context.

Imported by the handlers and by the service definition (``service.py``), so that neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.payment.provider import PaymentGateway
from services.payment.store import PaymentStore


class PaymentSettings(BaseSettings):
    """Payment configuration, read from ``CHOREO_PAYMENT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_PAYMENT_", extra="ignore", frozen=True)

    gateway_timeout_s: float = Field(
        default=2.0, gt=0, description="How long a gateway call may take before it is retried."
    )
    slow_delay_s: float = Field(
        default=1.5, ge=0, description="How late the simulated gateway answers `tok_slow`."
    )
    flaky_failures: int = Field(
        default=2, ge=0, description="Failed calls per order before `tok_flaky` is charged."
    )
    failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Probability that any gateway call fails transiently."
    )


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """What a payment handler works with, bound to the delivery's transaction."""

    store: PaymentStore
    provider: PaymentGateway
    config: PaymentSettings
