"""The shipping process: the :class:`Service` definition, live and for a replay."""

from __future__ import annotations

from events.locks import saga_keys_locked_first
from events.personal_data import PostgresKeyring, keys_schema
from events.service import Service
from events.settings import Settings
from services.shipping import SERVICE_NAME
from services.shipping.context import ShippingContext, ShippingSettings
from services.shipping.provider import Carrier, SimulatedCarrier
from services.shipping.replay import ReplayCarrier
from services.shipping.returns import router  # the order handlers and the returns' on one router
from services.shipping.store import DDL, PostgresShippingStore


def build(
    settings: Settings,
    config: ShippingSettings | None = None,
    *,
    provider: Carrier | None = None,
) -> Service[ShippingContext]:
    """The shipping service; ``config`` defaults to the ``CHOREO_SHIPPING_*`` environment,
    ``provider`` to the simulated carrier (a replay passes its own)."""
    cfg = config or ShippingSettings()
    # One carrier per process: it keeps the booking references across messages.
    carrier = provider or SimulatedCarrier(
        name=cfg.carrier_name,
        delivery_days=cfg.delivery_days,
        unserved_countries=cfg.unserved_countries,
        failure_rate=cfg.failure_rate,
    )
    keys = keys_schema(settings)
    return Service(
        name=SERVICE_NAME,
        router=router,
        context=lambda conn, schema: ShippingContext(
            PostgresShippingStore(conn, schema), carrier, cfg, PostgresKeyring(conn, keys)
        ),
        ddl=(DDL,),
        # Handlers touch only their own order's rows: the lanes never wait on each other.
        lanes=settings.topic_partitions,
        # A batch's orders locked in one statement, not one per handler.
        batch_scope=saga_keys_locked_first(lambda ctx, keys: ctx.store.lock_orders(keys)),
    )


def build_for_replay(settings: Settings) -> Service[ShippingContext]:
    """The shipping service as ``choreo replay shipping`` runs it: its provider answers from the
    log (:class:`~services.shipping.replay.ReplayCarrier`)."""
    return build(settings, provider=ReplayCarrier())
