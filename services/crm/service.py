"""The CRM process: the :class:`Service` definition, live and for a replay."""

from __future__ import annotations

from events.service import Service
from events.settings import Settings
from services.crm import SERVICE_NAME
from services.crm.context import CrmContext, CrmSettings
from services.crm.handlers import router
from services.crm.provider import CrmSystem, SimulatedCrm
from services.crm.replay import ReplayCrm
from services.crm.store import DDL, PostgresCrmStore


def build(
    settings: Settings,
    config: CrmSettings | None = None,
    *,
    provider: CrmSystem | None = None,
) -> Service[CrmContext]:
    """The CRM service; ``config`` defaults to the ``CHOREO_CRM_*`` environment, ``provider``
    to the simulated CRM (a replay passes its own)."""
    cfg = config or CrmSettings()
    crm = provider or SimulatedCrm(failure_rate=cfg.failure_rate)
    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn, schema: CrmContext(PostgresCrmStore(conn, schema), crm, cfg),
        ddl=(DDL,),
    )


def build_for_replay(settings: Settings) -> Service[CrmContext]:
    """The CRM service as ``choreo replay crm`` runs it: its provider answers from the
    log (:class:`~services.crm.replay.ReplayCrm`)."""
    return build(settings, provider=ReplayCrm())
