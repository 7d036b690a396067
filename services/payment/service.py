"""The payment process: settings, the handlers' context, and the :class:`Service` definition."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.database import schema_name
from events.service import Service
from events.settings import Settings
from services.payment import SERVICE_NAME
from services.payment.handlers import router
from services.payment.provider import PaymentGateway, SimulatedGateway
from services.payment.store import DDL, PaymentStore, PostgresPaymentStore


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


def build(
    settings: Settings,
    config: PaymentSettings | None = None,
    *,
    provider: PaymentGateway | None = None,
) -> Service[PaymentContext]:
    """The payment service; ``config`` defaults to the ``CHOREO_PAYMENT_*`` environment,
    ``provider`` to the simulated gateway (a replay passes its own)."""
    cfg = config or PaymentSettings()
    schema = schema_name(settings, SERVICE_NAME)
    # One gateway per process: it keeps the idempotency keys and attempt counts across messages.
    gateway = provider or SimulatedGateway(
        flaky_failures=cfg.flaky_failures,
        slow_delay_s=cfg.slow_delay_s,
        failure_rate=cfg.failure_rate,
    )
    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn: PaymentContext(PostgresPaymentStore(conn, schema), gateway, cfg),
        ddl=(DDL,),
        # Handlers touch only their own order's rows: the lanes never wait on each other.
        lanes=settings.topic_partitions,
    )
