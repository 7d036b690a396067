"""The CRM process: settings, the handlers' context, and the :class:`Service` definition."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.database import schema_name
from events.service import Service
from events.settings import Settings
from services.crm import SERVICE_NAME
from services.crm.handlers import router
from services.crm.provider import CrmSystem, SimulatedCrm
from services.crm.store import DDL, CrmStore, PostgresCrmStore


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


def build(
    settings: Settings,
    config: CrmSettings | None = None,
    *,
    provider: CrmSystem | None = None,
) -> Service[CrmContext]:
    """The CRM service; ``config`` defaults to the ``CHOREO_CRM_*`` environment, ``provider``
    to the simulated CRM (a replay passes its own)."""
    cfg = config or CrmSettings()
    schema = schema_name(settings, SERVICE_NAME)
    crm = provider or SimulatedCrm(failure_rate=cfg.failure_rate)
    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn: CrmContext(PostgresCrmStore(conn, schema), crm, cfg),
        ddl=(DDL,),
    )
