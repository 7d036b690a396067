"""Saga definitions: the steps, policy and deadlines of the order saga, keyed by version.

The old order core, no longer used by the running coordinator (it decides with
:mod:`saga_coordinator.engine` on :mod:`sagas.order`): kept as the reference the engine is
checked against (``tests/unit/saga_coordinator/engine/test_order_equivalence.py``).

A saga records the version of its definition in its first fact and is decided with that version
until it ends, even after a newer version is registered: changing the rules under a running saga
(e.g. adding an approval step it has already passed) would make its history unexplainable.

A version fixes the *shape* of the saga (which optional steps exist) and the defaults of its
knobs. Operators tune knobs (thresholds, deadlines, retry limits)
with :class:`~saga_coordinator.service.CoordinatorSettings`; a knob set explicitly in the
environment overrides that knob in every registered version (see
:meth:`DefinitionRegistry.with_overrides`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeAlias

from saga_coordinator.errors import InvalidDefinitionError, UnknownDefinitionError

StepName: TypeAlias = Literal["inventory", "approval", "payment", "shipping", "crm", "email"]
"""A step of the order saga, in flow order."""

REQUIRED_STEPS: tuple[StepName, ...] = ("inventory", "payment", "shipping")
"""Steps every version has: the services perform them whatever the coordinator thinks."""

ApprovalTimeoutAction: TypeAlias = Literal["reject", "escalate"]
"""What an unanswered approval request leads to: reject the order, or ask an operator."""

KNOBS: frozenset[str] = frozenset(
    {
        "approval_threshold_minor",
        "approval_timeout",
        "approval_timeout_action",
        "inventory_deadline",
        "payment_deadline",
        "shipping_deadline",
        "crm_deadline",
        "email_deadline",
        "compensation_ack_timeout",
        "compensation_max_attempts",
    }
)
"""The fields of :class:`SagaDefinition` that settings may override."""


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    """One version of the order saga. Validated when created.

    Attributes:
        version: Recorded in each saga's first fact; from 1.
        steps: The steps in flow order; ``approval``, ``crm`` and ``email`` are optional
            (without ``approval`` every order is auto-approved; without ``crm``/``email``
            completion does not wait for them).
        approval_threshold_minor: Totals at or above it need a human's approval.
        approval_timeout: How long an approval request stays open.
        approval_timeout_action: ``reject`` the order or ``escalate`` (needs attention, keep
            waiting) when the approval request expires.
        inventory_deadline: From `order.placed` to a reservation answer.
        payment_deadline: From the approval to a payment answer.
        shipping_deadline: From the charge to a shipment answer.
        crm_deadline: From the shipment to the CRM update.
        email_deadline: From the shipment to the confirmation email's outcome (then the order
            completes with a note; email is not critical).
        compensation_ack_timeout: How long a compensating command may go unacknowledged before
            it is sent again.
        compensation_max_attempts: Sends of one compensating command before the saga needs
            attention.
    """

    version: int
    steps: tuple[StepName, ...] = ("inventory", "approval", "payment", "shipping", "crm", "email")
    approval_threshold_minor: int = 100_000
    approval_timeout: timedelta = timedelta(days=1)
    approval_timeout_action: ApprovalTimeoutAction = "reject"
    inventory_deadline: timedelta = timedelta(seconds=30)
    payment_deadline: timedelta = timedelta(seconds=30)
    shipping_deadline: timedelta = timedelta(seconds=30)
    crm_deadline: timedelta = timedelta(seconds=30)
    email_deadline: timedelta = timedelta(seconds=15)
    compensation_ack_timeout: timedelta = timedelta(seconds=10)
    compensation_max_attempts: int = 5

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.version < 1:
            problems.append(f"version must be >= 1, not {self.version}")
        missing = [s for s in REQUIRED_STEPS if s not in self.steps]
        if missing:
            problems.append(f"steps lack the required {missing}")
        if len(set(self.steps)) != len(self.steps):
            problems.append(f"steps repeat: {self.steps}")
        order = ("inventory", "approval", "payment", "shipping", "crm", "email")
        if list(self.steps) != [s for s in order if s in self.steps]:
            problems.append(f"steps must follow the flow order {order}: {self.steps}")
        if self.approval_threshold_minor < 0:
            problems.append("approval_threshold_minor must be >= 0")
        if self.approval_timeout_action not in ("reject", "escalate"):
            problems.append(f"unknown approval_timeout_action {self.approval_timeout_action!r}")
        if self.compensation_max_attempts < 1:
            problems.append("compensation_max_attempts must be >= 1")
        for name in (
            "approval_timeout",
            "inventory_deadline",
            "payment_deadline",
            "shipping_deadline",
            "crm_deadline",
            "email_deadline",
            "compensation_ack_timeout",
        ):
            if getattr(self, name) <= timedelta(0):
                problems.append(f"{name} must be positive")
        if problems:
            raise InvalidDefinitionError(f"saga definition v{self.version}: " + "; ".join(problems))

    def has(self, step: StepName) -> bool:
        """Whether this version has ``step``."""
        return step in self.steps

    def deadline(self, step: StepName) -> timedelta:
        """How long ``step`` may take (the approval's is its timeout)."""
        deadline: timedelta = getattr(
            self, "approval_timeout" if step == "approval" else f"{step}_deadline"
        )
        return deadline

    def with_overrides(self, overrides: Mapping[str, object]) -> SagaDefinition:
        """This version with some knobs replaced (validated again)."""
        unknown = set(overrides) - KNOBS
        if unknown:
            raise InvalidDefinitionError(f"not tunable knobs: {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)  # type: ignore[arg-type]


class DefinitionRegistry:
    """The saga definitions a process knows, by version; the newest starts new sagas."""

    def __init__(self, definitions: Iterable[SagaDefinition]) -> None:
        self._by_version: dict[int, SagaDefinition] = {}
        for definition in definitions:
            if definition.version in self._by_version:
                raise InvalidDefinitionError(f"saga definition v{definition.version} twice")
            self._by_version[definition.version] = definition
        if not self._by_version:
            raise InvalidDefinitionError("a registry needs at least one saga definition")

    @property
    def current(self) -> SagaDefinition:
        """The version new sagas start on: the highest."""
        return self._by_version[max(self._by_version)]

    @property
    def versions(self) -> list[int]:
        return sorted(self._by_version)

    def get(self, version: int) -> SagaDefinition:
        """The definition of ``version``; raises :class:`UnknownDefinitionError` if absent."""
        try:
            return self._by_version[version]
        except KeyError:
            raise UnknownDefinitionError(
                f"saga definition v{version} is not registered (have {self.versions})"
            ) from None

    def pinned(self, version: int | None) -> SagaDefinition:
        """The definition a saga runs on: its recorded version, or the current for a new one."""
        return self.current if version is None else self.get(version)

    def register(self, definition: SagaDefinition) -> DefinitionRegistry:
        """A registry with ``definition`` added (registries are immutable)."""
        return DefinitionRegistry([*self._by_version.values(), definition])

    def with_overrides(self, overrides: Mapping[str, object]) -> DefinitionRegistry:
        """Every version with the given knobs replaced.

        Knobs are operational (an operator raising a deadline means it for every order); the
        shape of a version (its steps) is never overridden.
        """
        if not overrides:
            return self
        return DefinitionRegistry(d.with_overrides(overrides) for d in self._by_version.values())


V1 = SagaDefinition(version=1)
"""The order saga as the README describes it: approval above 1,000.00, CRM and email."""

DEFINITIONS = DefinitionRegistry([V1])
"""Every version this code knows. Register a new one here; never edit a released one."""
