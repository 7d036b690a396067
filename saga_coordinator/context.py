"""The coordinator's settings and the context its handlers and timers work with.

Imported by the handlers, the timers and the service definition (``service.py``), so that
none of them imports another for its types.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.model import utc_now
from saga_coordinator.cache import DEFAULT_SIZE, HeldSagas, SagaCache
from saga_coordinator.store import SagaStore
from sagas.order import V1 as ORDER
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

_KNOBS = ORDER.knob_values()


class CoordinatorSettings(BaseSettings):
    """The coordinator's knobs, from ``CHOREO_SAGA_<FIELD>`` environment variables.

    The fields tune the order saga's knobs (:mod:`sagas.order`), typed and checked; defaults
    are its own. Every other knob of a shipped definition is read the same way by its name
    (``CHOREO_SAGA_REFUND_APPROVAL_THRESHOLD_MINOR``, ``CHOREO_SAGA_PICKUP_DEADLINE_S`` in
    seconds for a duration). A knob set explicitly (in the environment or as an argument)
    overrides it in every registered version that has it; knobs left unset keep each
    version's own value.
    """

    model_config = SettingsConfigDict(env_prefix="CHOREO_SAGA_", extra="ignore", frozen=True)

    approval_threshold_minor: int = Field(
        default=_KNOBS["approval_threshold_minor"],
        ge=0,
        description="Totals (minor units) at or above it need a human's approval.",
    )
    approval_timeout_s: float = Field(
        default=_KNOBS["approval_timeout"].total_seconds(),
        gt=0,
        description="How long an approval request stays open.",
    )
    approval_timeout_action: Literal["reject", "escalate"] = Field(
        default=_KNOBS["approval_timeout_action"],
        description="`reject` the order when the approval expires, or `escalate` and wait.",
    )
    inventory_deadline_s: float = Field(
        default=_KNOBS["inventory_deadline"].total_seconds(),
        gt=0,
        description="From order.placed to a reservation answer.",
    )
    payment_deadline_s: float = Field(
        default=_KNOBS["payment_deadline"].total_seconds(),
        gt=0,
        description="From the approval to a payment answer; then payment_timeout.",
    )
    shipping_deadline_s: float = Field(
        default=_KNOBS["shipping_deadline"].total_seconds(),
        gt=0,
        description="From the charge to a shipment answer; then refund and release.",
    )
    crm_deadline_s: float = Field(
        default=_KNOBS["crm_deadline"].total_seconds(),
        gt=0,
        description="From the shipment to the CRM update; then cancel, refund, release.",
    )
    email_deadline_s: float = Field(
        default=_KNOBS["email_deadline"].total_seconds(),
        gt=0,
        description="From the shipment to the confirmation email's outcome; then complete.",
    )
    compensation_ack_timeout_s: float = Field(
        default=_KNOBS["compensation_ack_timeout"].total_seconds(),
        gt=0,
        description="Unacknowledged that long, a compensating command is sent again.",
    )
    compensation_max_attempts: int = Field(
        default=_KNOBS["compensation_max_attempts"],
        ge=1,
        description="Sends of one compensating command before the saga needs attention.",
    )
    timer_poll_interval_ms: int = Field(
        default=150, ge=10, description="How often the timer loop looks for due timers."
    )
    timer_batch_size: int = Field(
        default=100, ge=1, description="Due timers fired per transaction."
    )
    timer_fair: bool = Field(
        default=True,
        description="Judge deadlines by the participant's own time (saga_coordinator.fairness);"
        " false: fire them at their due time, whatever Choreo's queues hold.",
    )
    cache_size: int = Field(
        default=DEFAULT_SIZE,
        ge=0,
        description="Sagas whose folded state a coordinator process keeps between messages"
        " (0: read every saga's whole stream for each message).",
    )
    timer_progress_interval_ms: int = Field(
        default=250,
        ge=50,
        description="How often the broker's end offsets and consumer groups are sampled.",
    )

    def definition_overrides(self) -> dict[str, object]:
        """The knobs set explicitly, by knob name (``crm_deadline_s`` → ``crm_deadline``)."""
        overrides: dict[str, object] = {}
        for name in self.model_fields_set:
            if name.startswith("timer_") or name == "cache_size":
                continue  # the loop's own settings, not the saga's
            value = getattr(self, name)
            if name.endswith("_s"):
                overrides[name.removesuffix("_s")] = timedelta(seconds=value)
            else:
                overrides[name] = value
        return overrides | _other_knobs(set(type(self).model_fields))


def _other_knobs(typed: set[str]) -> dict[str, object]:
    """The shipped definitions' knobs without a typed field, from ``CHOREO_SAGA_<NAME>``."""
    found: dict[str, object] = {}
    for knob in {k.name: k for d in SAGAS for k in d.knobs().values()}.values():
        duration = isinstance(knob.default, timedelta)
        setting = f"{knob.name}_s" if duration else knob.name
        raw = os.environ.get(f"CHOREO_SAGA_{setting.upper()}")
        if setting in typed or raw is None:
            continue
        try:
            if duration:
                found[knob.name] = timedelta(seconds=float(raw))
            else:
                found[knob.name] = type(knob.default)(raw)
        except ValueError:
            raise ValueError(
                f"CHOREO_SAGA_{setting.upper()}={raw!r}: not a {setting} value"
            ) from None
    return found


@lru_cache(maxsize=1)
def get_coordinator_settings() -> CoordinatorSettings:
    """The process-wide coordinator settings, read once from the environment."""
    return CoordinatorSettings()


@dataclass(frozen=True, slots=True)
class CoordinatorContext:
    """What a handler (or a timer) works with, bound to one transaction.

    Attributes:
        store: The saga store, on the transaction's connection.
        definitions: The saga definitions by type and version (with the operator's knobs).
        clock: Now, in UTC; injectable so tests can move time.
        cache: The process's folded sagas (:mod:`saga_coordinator.cache`); one per process,
            shared by every context (a new one remembers nothing yet).
        held: The sagas the transaction locked and read ahead for a batch of messages.
    """

    store: SagaStore
    definitions: SagaRegistry = SAGAS
    clock: Callable[[], datetime] = field(default=utc_now)
    cache: SagaCache = field(default_factory=SagaCache)
    held: HeldSagas = field(default_factory=HeldSagas)
