"""The email process: settings, the handlers' context, and the :class:`Service` definition."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.database import schema_name
from events.service import Service
from events.settings import Settings
from services.email import SERVICE_NAME
from services.email.handlers import router
from services.email.provider import Mailer, SimulatedMailer
from services.email.store import DDL, EmailStore, PostgresEmailStore


class EmailSettings(BaseSettings):
    """Email configuration, read from ``CHOREO_EMAIL_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_EMAIL_", extra="ignore", frozen=True)

    sender: str = Field(default="orders@choreo.example", description="The From address.")
    timeout_s: float = Field(
        default=5.0, gt=0, description="How long a mailer call may take before it is retried."
    )
    flaky_failures: int = Field(
        default=2, ge=0, description="Failed sends per mail to `@flaky.example` before success."
    )
    failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Probability that any send fails transiently."
    )


@dataclass(frozen=True, slots=True)
class EmailContext:
    """What an email handler works with, bound to the delivery's transaction."""

    store: EmailStore
    provider: Mailer
    config: EmailSettings


def build(
    settings: Settings,
    config: EmailSettings | None = None,
    *,
    provider: Mailer | None = None,
) -> Service[EmailContext]:
    """The email service; ``config`` defaults to the ``CHOREO_EMAIL_*`` environment,
    ``provider`` to the simulated mailer (a replay passes its own)."""
    cfg = config or EmailSettings()
    schema = schema_name(settings, SERVICE_NAME)
    # One mailer per process: it keeps the idempotency keys and attempt counts across messages.
    mailer = provider or SimulatedMailer(
        sender=cfg.sender, flaky_failures=cfg.flaky_failures, failure_rate=cfg.failure_rate
    )
    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn: EmailContext(PostgresEmailStore(conn, schema), mailer, cfg),
        ddl=(DDL,),
        # Handlers touch only their own order's rows: the lanes never wait on each other.
        lanes=settings.topic_partitions,
    )
