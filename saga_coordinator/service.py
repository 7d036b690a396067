"""The saga coordinator as a Choreo process: its settings and :func:`build`.

``python -m saga_coordinator`` runs it (see ``__main__.py``) with the shared runtime: consumer
group ``<prefix>saga-coordinator``, schema ``<prefix>_saga_coordinator`` holding the inbox,
outbox, ``saga_events`` and ``saga_timers``, and the timer loop as a background task.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.database import Connection, schema_name
from events.model import utc_now
from events.service import Service, ServiceRuntime
from events.settings import Settings
from saga_coordinator.definition import DEFINITIONS, V1, ApprovalTimeoutAction, DefinitionRegistry
from saga_coordinator.handlers import CoordinatorContext, router
from saga_coordinator.saga import PRODUCER
from saga_coordinator.store import DDL, PostgresSagaStore
from saga_coordinator.timers import timer_loop as run_timer_loop

SERVICE_NAME = PRODUCER
"""``saga-coordinator``: the consumer group, schema and producer name derive from it."""


class CoordinatorSettings(BaseSettings):
    """The coordinator's knobs, from ``CHOREO_SAGA_<FIELD>`` environment variables.

    Defaults are those of the newest saga definition. A knob set explicitly (in the
    environment or as an argument) overrides it in every registered definition version; knobs
    left unset keep each version's own value.
    """

    model_config = SettingsConfigDict(env_prefix="CHOREO_SAGA_", extra="ignore", frozen=True)

    approval_threshold_minor: int = Field(
        default=V1.approval_threshold_minor,
        ge=0,
        description="Totals (minor units) at or above it need a human's approval.",
    )
    approval_timeout_s: float = Field(
        default=V1.approval_timeout.total_seconds(),
        gt=0,
        description="How long an approval request stays open.",
    )
    approval_timeout_action: ApprovalTimeoutAction = Field(
        default=V1.approval_timeout_action,
        description="`reject` the order when the approval expires, or `escalate` and wait.",
    )
    inventory_deadline_s: float = Field(
        default=V1.inventory_deadline.total_seconds(),
        gt=0,
        description="From order.placed to a reservation answer.",
    )
    payment_deadline_s: float = Field(
        default=V1.payment_deadline.total_seconds(),
        gt=0,
        description="From the approval to a payment answer; then payment_timeout.",
    )
    shipping_deadline_s: float = Field(
        default=V1.shipping_deadline.total_seconds(),
        gt=0,
        description="From the charge to a shipment answer; then refund and release.",
    )
    crm_deadline_s: float = Field(
        default=V1.crm_deadline.total_seconds(),
        gt=0,
        description="From the shipment to the CRM update; then cancel, refund, release.",
    )
    email_deadline_s: float = Field(
        default=V1.email_deadline.total_seconds(),
        gt=0,
        description="From the shipment to the confirmation email's outcome; then complete.",
    )
    compensation_ack_timeout_s: float = Field(
        default=V1.compensation_ack_timeout.total_seconds(),
        gt=0,
        description="Unacknowledged that long, a compensating command is sent again.",
    )
    compensation_max_attempts: int = Field(
        default=V1.compensation_max_attempts,
        ge=1,
        description="Sends of one compensating command before the saga needs attention.",
    )
    timer_poll_interval_ms: int = Field(
        default=150, ge=10, description="How often the timer loop looks for due timers."
    )
    timer_batch_size: int = Field(
        default=100, ge=1, description="Due timers fired per transaction."
    )

    def definition_overrides(self) -> dict[str, object]:
        """The knobs set explicitly, as :class:`SagaDefinition` fields."""
        overrides: dict[str, object] = {}
        for name in self.model_fields_set:
            if name.startswith("timer_"):
                continue  # the loop's own settings, not the saga's
            value = getattr(self, name)
            if name.endswith("_s"):
                overrides[name.removesuffix("_s")] = timedelta(seconds=value)
            else:
                overrides[name] = value
        return overrides


@lru_cache(maxsize=1)
def get_coordinator_settings() -> CoordinatorSettings:
    """The process-wide coordinator settings, read once from the environment."""
    return CoordinatorSettings()


def build(
    settings: Settings,
    coordinator: CoordinatorSettings | None = None,
    *,
    definitions: DefinitionRegistry = DEFINITIONS,
    clock: Callable[[], datetime] = utc_now,
) -> Service[CoordinatorContext]:
    """The saga coordinator process.

    Args:
        settings: The shared Choreo settings.
        coordinator: The coordinator's knobs; read from the environment if omitted.
        definitions: The saga definitions (tests register extra versions).
        clock: Now, in UTC (tests move time).
    """
    coordinator = coordinator or get_coordinator_settings()
    registry = definitions.with_overrides(coordinator.definition_overrides())
    # The runtime names the schema the same way (events.service.ServiceRuntime); the timer
    # loop checks that both agree.
    schema = schema_name(settings, SERVICE_NAME.replace("-", "_"))
    poll_interval_s = coordinator.timer_poll_interval_ms / 1000
    batch_size = coordinator.timer_batch_size

    def context(conn: Connection) -> CoordinatorContext:
        return CoordinatorContext(PostgresSagaStore(conn, schema), registry, clock)

    async def timer_loop(runtime: ServiceRuntime[CoordinatorContext]) -> None:
        await run_timer_loop(runtime, poll_interval_s=poll_interval_s, batch_size=batch_size)

    return Service(
        name=SERVICE_NAME,
        router=router,
        context=context,
        ddl=DDL,
        background=(timer_loop,),
        # Handlers touch only their own order's rows: the lanes never wait on each other.
        lanes=settings.topic_partitions,
    )
