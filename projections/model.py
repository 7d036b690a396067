"""What the read models read of a logged event.

:class:`LoggedEvent` is an event as the projector logged it (type, time, producer, payload):
what the saga fold (:mod:`projections.sagas_model`) reads. The audit trail's line for each
event is the event's own :meth:`~events.model.Event.summary`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple


class LoggedEvent(NamedTuple):
    """One event as the projector logged it.

    A named tuple: immutable (histories are cached and shared) and built in a third of a
    frozen dataclass's time, once per event logged or replayed.
    """

    event_id: str
    event_type: str
    order_id: str
    occurred_at: datetime
    producer: str
    payload: dict[str, Any]
    traceparent: str | None = None


RANK: Callable[[LoggedEvent], tuple[datetime, str]] = itemgetter(3, 0)
"""An event's place among its saga's: ``(occurred_at, event_id)``, the order every fold reads
them in (read in C: the folds' hottest call)."""
