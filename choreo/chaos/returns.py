"""A chaos run's returns: the customers of some of its orders send items back, under the faults.

The returns saga runs on the same runtime as the order saga, so a run also asks for returns:
when one of its orders settles the way a return of it needs (delivered, or declined for the
``unpaid`` return), the follower asks for a return of it, for ``returns`` percent of the
orders, picked by a hash of the order id (not by when it settles, which the faults reorder).
Which return: the return scenarios of that order's scenario
(:data:`contracts.return_samples.RETURN_OF`) in turn, so a run of a few dozen orders meets
each path of the returns saga.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from contracts.return_samples import RETURN_OF
from events.model import Event
from sagas.returns import approval

RETURN_SAGA = "return"
SETTLED = ("return.completed", "return.cancelled", "return.needs_attention")
"""Events after which a return does nothing more by itself."""

EXPECTED: dict[str, str] = {
    "happy": "completed",
    "large": "completed",
    "unpickable": "cancelled:pickup_failed",
    "damaged": "cancelled:inspection_failed",
    "unpaid": "cancelled:refund_declined",
}
"""How each return scenario ends when the platform keeps up (as :data:`choreo.mix.EXPECTED`
says for orders)."""

RETURNED_AFTER: dict[str, str] = {"unpaid": "order.cancelled"}
"""The order's ending a return scenario follows; any other follows ``order.completed``."""


@dataclass(frozen=True)
class PlacedReturn:
    """One return the run asked for: its key, the order it returns items of, its scenario."""

    return_id: str
    order_id: str
    scenario: str


@dataclass
class ReturnPlan:
    """Which settled orders get a return, and which one (see the module docstring)."""

    percent: int
    _turn: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def scenario_for(self, order_id: str, order_scenario: str, ending: str) -> str | None:
        """The return scenario to ask for of ``order_id`` that just ended with the event type
        ``ending`` (``order.completed``, ...), or ``None`` for no return."""
        choices = [
            name
            for name, of in RETURN_OF.items()
            if of == order_scenario and RETURNED_AFTER.get(name, "order.completed") == ending
        ]
        if not choices or not self.chosen(order_id):
            return None
        turn = self._turn[order_scenario]
        self._turn[order_scenario] += 1
        return choices[turn % len(choices)]

    def chosen(self, order_id: str) -> bool:
        """Whether ``order_id`` is among the ``percent`` of orders that get a return."""
        digest = hashlib.blake2b(order_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % 100 < self.percent


def approve_return(by: str, reason: str) -> Event:
    """A person's approval of a return, as the returns saga's definition builds it."""
    assert approval.answer is not None
    return approval.answer(True, by, reason)
