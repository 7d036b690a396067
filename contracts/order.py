"""The order saga's statuses and compensations, written once for every party.

The coordinator decides with them, the read models fold with them, and the CLI and the API
validate and show them; none of them spells these lists out again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

SagaStatus: TypeAlias = Literal[
    "placed",
    "awaiting_approval",
    "reserved",
    "paid",
    "shipped",
    "completed",
    "compensating",
    "cancelled",
    "needs_attention",
]
"""Where an order's saga is, for projections and operators."""

STATUSES: tuple[SagaStatus, ...] = get_args(SagaStatus)
"""Every status, in the order a saga moves through them."""

TERMINAL_STATUSES: frozenset[SagaStatus] = frozenset({"completed", "cancelled", "needs_attention"})
"""Statuses a saga does not leave on its own (`needs_attention` waits for an operator)."""

CompensationCommand: TypeAlias = Literal["shipment.cancel", "payment.refund", "inventory.release"]
"""A command that undoes a step that succeeded."""


@dataclass(frozen=True, slots=True)
class Compensation:
    """How one step is undone.

    Attributes:
        command: The compensating command the coordinator sends.
        acknowledged_by: The event the participant answers it with.
        undoes: The event type of the success it undoes.
    """

    command: CompensationCommand
    acknowledged_by: str
    undoes: str


COMPENSATIONS: tuple[Compensation, ...] = (
    Compensation(
        "shipment.cancel", acknowledged_by="shipment.cancelled", undoes="shipment.scheduled"
    ),
    Compensation("payment.refund", acknowledged_by="payment.refunded", undoes="payment.charged"),
    Compensation(
        "inventory.release", acknowledged_by="inventory.released", undoes="inventory.reserved"
    ),
)
"""Every compensation, newest step first: the order in which a saga is undone."""

COMPENSATION_ORDER: tuple[CompensationCommand, ...] = tuple(c.command for c in COMPENSATIONS)
"""Compensating commands, newest step first."""

COMPENSATING_COMMANDS: frozenset[str] = frozenset(COMPENSATION_ORDER)
"""The event types that are compensating commands."""

ACKNOWLEDGEMENTS: dict[str, CompensationCommand] = {
    c.acknowledged_by: c.command for c in COMPENSATIONS
}
"""Acknowledging event type → the command it acknowledges."""

UNDOES: dict[CompensationCommand, str] = {c.command: c.undoes for c in COMPENSATIONS}
"""Command → the event type of the success it undoes."""
