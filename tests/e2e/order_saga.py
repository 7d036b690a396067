"""An order's saga as the e2e tests read it: the coordinator's generic state (folded from its
own store, as the coordinator folds it) seen through the order saga's definition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from saga_coordinator.engine.state import SagaState
from sagas.order import V1 as ORDER


@dataclass(frozen=True, slots=True)
class Undo:
    command: str
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class OrderSaga:
    """The order-shaped fields the tests assert on."""

    state: SagaState

    @property
    def status(self) -> str:
        return self.state.status(ORDER)

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def cancel_reason(self) -> str | None:
        return self.state.cancel_reason

    @property
    def notes(self) -> tuple[str, ...]:
        return self.state.notes

    @property
    def approved_by(self) -> str | None:
        return self.state.data.get("approved_by")

    @property
    def rejected_by(self) -> str | None:
        return self.state.data.get("rejected_by")

    @property
    def payment_id(self) -> str | None:
        return self.state.data.get("payment_id")

    @property
    def shipment_id(self) -> str | None:
        return self.state.data.get("shipment_id")

    @property
    def crm_updated_at(self) -> datetime | None:
        crm = self.state.step("crm")
        return crm.finished_at if crm.outcome == "succeeded" else None

    @property
    def email_outcome(self) -> str | None:
        outcome = self.state.step("email").outcome
        return {"succeeded": "sent", "failed": "failed", "timed_out": "deadline"}.get(outcome or "")

    @property
    def compensations(self) -> tuple[Undo, ...]:
        return tuple(
            Undo(ORDER.compensation(u.step).command.event_type, u.acknowledged)
            for u in self.state.undos
        )
