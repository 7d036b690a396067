"""The email process: the :class:`Service` definition, live and for a replay."""

from __future__ import annotations

from events.personal_data import PostgresKeyring, keys_schema
from events.service import Service
from events.settings import Settings
from services.email import SERVICE_NAME
from services.email.context import EmailContext, EmailSettings
from services.email.provider import Mailer, SimulatedMailer
from services.email.replay import ReplayMailer
from services.email.returns import router  # the order handlers and the returns' on one router
from services.email.store import DDL, PostgresEmailStore


def build(
    settings: Settings,
    config: EmailSettings | None = None,
    *,
    provider: Mailer | None = None,
) -> Service[EmailContext]:
    """The email service; ``config`` defaults to the ``CHOREO_EMAIL_*`` environment,
    ``provider`` to the simulated mailer (a replay passes its own)."""
    cfg = config or EmailSettings()
    # One mailer per process: it keeps the idempotency keys and attempt counts across messages.
    mailer = provider or SimulatedMailer(
        sender=cfg.sender, flaky_failures=cfg.flaky_failures, failure_rate=cfg.failure_rate
    )
    keys = keys_schema(settings)
    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn, schema: EmailContext(
            PostgresEmailStore(conn, schema), mailer, cfg, PostgresKeyring(conn, keys)
        ),
        ddl=(DDL,),
        # Handlers touch only their own order's rows: the lanes never wait on each other.
        lanes=settings.topic_partitions,
    )


def build_for_replay(settings: Settings) -> Service[EmailContext]:
    """The email service as ``choreo replay email`` runs it: its provider answers from the
    log (:class:`~services.email.replay.ReplayMailer`)."""
    return build(settings, provider=ReplayMailer())
