"""The email handlers' settings and context.

Imported by the handlers and by the service definition (``service.py``), so that neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.personal_data import Keyring
from services.email.provider import Mailer
from services.email.store import EmailStore


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
    keyring: Keyring
    """Customers' data keys: the recipient's address and name arrive sealed, opened to send."""
