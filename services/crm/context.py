"""The CRM handlers' settings and context.

Imported by the handlers and by the service definition (``service.py``), so that neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.crm.provider import CrmSystem
from services.crm.store import CrmStore


class CrmSettings(BaseSettings):
    """CRM configuration, read from ``CHOREO_CRM_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_CRM_", extra="ignore", frozen=True)

    timeout_s: float = Field(
        default=5.0, gt=0, description="How long a CRM push may take before it is retried."
    )
    failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="Probability that a CRM push fails transiently."
    )


@dataclass(frozen=True, slots=True)
class CrmContext:
    """What a CRM handler works with, bound to the delivery's transaction."""

    store: CrmStore
    provider: CrmSystem
    config: CrmSettings
