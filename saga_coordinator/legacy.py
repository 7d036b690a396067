"""Facts the order saga stored before sagas were definitions, read as the engine's facts.

Sagas that started on the order saga's own core keep their stored history (``saga_events``);
:func:`upcast` reads each old fact as the one generic fact that means the same for the order
saga's definition (:mod:`sagas.order`), one for one, so positions (``seq``) are unchanged and a
saga that was running when the coordinator moved onto the engine finishes on it. It is the one
place that knows the old kinds, and goes once no such saga remains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saga_coordinator import facts as old
from saga_coordinator.engine import facts as new
from sagas.definition import SagaDefinition
from sagas.registry import SagaRegistry

ORDER_TYPE = "order"


# Long: one case per old fact kind, side by side with what it becomes.
def upcast(fact: old.Fact, d: SagaDefinition) -> new.Fact:
    """The generic fact ``fact`` (an order saga fact of the old core) stands for."""
    common: dict[str, Any] = {"at": fact.at, "event_id": fact.event_id}
    match fact:
        case old.SagaStarted():
            return new.Started(
                **common,
                saga_type=ORDER_TYPE,
                definition_version=fact.definition_version,
                correlation_id=fact.correlation_id,
                captured={},
                start_seen=False,  # the old core recorded order.placed as a fact of its own
            )
        case old.OrderSeen():
            keep = {"customer_id", "total_minor", "currency"}
            return new.Captured(**common, captured=fact.model_dump(mode="json", include=keep))
        case old.StockReserved():
            data = {"reservation_id": fact.reservation_id}
            return new.StepSucceeded(**common, step="inventory", captured=data)
        case old.StockUnavailable():
            return _failed(common, "inventory", fact.reason, "out_of_stock")
        case old.ApprovalRequested():
            return new.TaskRequested(**common, task="approval", expires_at=fact.expires_at)
        case old.AutoApproved():
            data = {"approved_by": "policy:auto"}
            return new.TaskDecided(**common, task="approval", outcome="auto", captured=data)
        case old.Approved():
            data = {"approved_by": fact.approved_by}
            return new.TaskDecided(**common, task="approval", outcome="approved", captured=data)
        case old.Rejected():
            return new.TaskDecided(
                **common,
                task="approval",
                outcome="rejected",
                detail=f"rejected by {fact.rejected_by}: {fact.reason}",
                captured={"rejected_by": fact.rejected_by},
            )
        case old.ApprovalTimedOut():
            data = {"rejected_by": "saga-coordinator"}
            return new.TaskDecided(**common, task="approval", outcome="timed_out", captured=data)
        case old.ApprovalEscalated():
            return new.TaskEscalated(**common, task="approval")
        case old.PaymentTaken():
            charge: dict[str, Any] = {
                "payment_id": fact.payment_id,
                "charged_amount_minor": fact.amount_minor,
                "charged_currency": fact.currency,
            }
            return new.StepSucceeded(**common, step="payment", captured=charge)
        case old.PaymentRefused():
            return _failed(common, "payment", fact.reason, "payment_declined")
        case old.ShipmentBooked():
            data = {"shipment_id": fact.shipment_id}
            return new.StepSucceeded(**common, step="shipping", captured=data)
        case old.ShipmentNotBooked():
            return _failed(common, "shipping", fact.reason, "shipment_failed")
        case old.CustomerUpdated():
            return new.StepSucceeded(**common, step="crm", captured={})
        case old.EmailOutcome(outcome="sent"):
            return new.StepSucceeded(**common, step="email", captured={})
        case old.EmailOutcome():
            timed_out = fact.outcome == "deadline"
            return new.StepFailed(
                **common,
                step="email",
                detail=fact.detail or "",
                deadline="answer" if timed_out else None,
            )
        case old.DeadlinePassed():
            node = d.node(fact.step)
            reason = getattr(getattr(node, "deadlines", None), "reason", None)
            detail = f"{fact.step} deadline passed"
            return new.StepFailed(
                **common, step=fact.step, detail=detail, reason=reason, deadline="answer"
            )
        case old.CompensationStarted():
            plan = tuple(d.compensated_by(command) for command in fact.plan)
            return new.UndoStarted(**common, reason=fact.reason, detail=fact.detail, plan=plan)
        case old.CompensationAdded():
            undone = d.compensated_by(fact.command)
            return new.UndoAdded(**common, step=undone, reason=fact.reason)
        case old.CompensationRequested():
            undone = d.compensated_by(fact.command)
            return new.UndoRequested(**common, step=undone, attempt=fact.attempt)
        case old.CompensationAcknowledged():
            return new.UndoAcknowledged(**common, step=d.compensated_by(fact.command))
        case old.CompensationExhausted():
            undone = d.compensated_by(fact.command)
            return new.UndoExhausted(**common, step=undone, attempts=fact.attempts)
        case old.SagaCompleted():
            return new.Completed(**common, notes=fact.notes)
        case old.SagaCancelled():
            return new.Cancelled(**common, reason=fact.reason, detail=fact.detail)
        case old.EventIgnored():
            return new.Ignored(**common, event_type=fact.event_type, why=fact.why)
    raise TypeError(f"no generic fact for the old {type(fact).__name__}")


def _failed(common: dict[str, Any], step: str, detail: str, reason: str) -> new.Fact:
    return new.StepFailed(**common, step=step, detail=detail, reason=reason)


def read(stream: Sequence[old.Fact | new.Fact], sagas: SagaRegistry) -> list[new.Fact]:
    """A stored stream as generic facts: old facts upcast on the order saga's version that
    the stream started on (its first fact says which)."""
    if all(isinstance(fact, new.Fact) for fact in stream):
        return list(stream)  # type: ignore[arg-type]  # checked just above
    first = stream[0]
    version = first.definition_version if isinstance(first, old.SagaStarted) else None
    definition = sagas.get(ORDER_TYPE, version) if version else sagas.current(ORDER_TYPE)
    return [fact if isinstance(fact, new.Fact) else upcast(fact, definition) for fact in stream]
