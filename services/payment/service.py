"""The payment process: the :class:`Service` definition, live and for a replay."""

from __future__ import annotations

from events.locks import saga_keys_locked_first
from events.service import Service, ServiceRuntime
from events.settings import Settings
from services.payment import SERVICE_NAME
from services.payment.context import PaymentContext, PaymentSettings
from services.payment.gateway_calls import DDL as GATEWAY_CALLS_DDL
from services.payment.gateway_calls import PostgresGatewayCalls
from services.payment.provider import PaymentGateway, SimulatedGateway
from services.payment.replay import ReplayGateway
from services.payment.returns import router  # the order handlers and the returns' on one router
from services.payment.store import DDL, PostgresPaymentStore


def build(
    settings: Settings,
    config: PaymentSettings | None = None,
    *,
    provider: PaymentGateway | None = None,
) -> Service[PaymentContext]:
    """The payment service; ``config`` defaults to the ``CHOREO_PAYMENT_*`` environment,
    ``provider`` to the simulated gateway (a replay passes its own)."""
    cfg = config or PaymentSettings()
    # One gateway per process: it keeps the idempotency keys across messages; its call counts
    # live in PostgreSQL, shared by the replicas as one real gateway's would be.
    shared_calls = PostgresGatewayCalls()
    gateway = provider or SimulatedGateway(
        flaky_failures=cfg.flaky_failures,
        slow_delay_s=cfg.slow_delay_s,
        failure_rate=cfg.failure_rate,
        shared_calls=shared_calls,
    )

    async def attach_gateway_calls(runtime: ServiceRuntime[PaymentContext]) -> None:
        shared_calls.attach(runtime.db, runtime.schema)

    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn, schema: PaymentContext(
            PostgresPaymentStore(conn, schema), gateway, cfg
        ),
        ddl=(DDL, GATEWAY_CALLS_DDL),
        on_start=attach_gateway_calls,
        # Handlers touch only their own order's rows. A return's refund locks its order too, so
        # a lane may wait for another lane's order; two lanes that each wait for the other (two
        # returns of crossed orders) are a deadlock PostgreSQL breaks, and the records of the
        # transaction it fails are delivered again (events/batches.py).
        lanes=settings.topic_partitions,
        # A batch's keys locked in one statement, not one statement per charge or refund.
        batch_scope=saga_keys_locked_first(lambda ctx, keys: ctx.store.lock_orders(keys)),
    )


def build_for_replay(settings: Settings) -> Service[PaymentContext]:
    """The payment service as ``choreo replay payment`` runs it: its provider answers from the
    log (:class:`~services.payment.replay.ReplayGateway`)."""
    return build(settings, provider=ReplayGateway())
