"""The projector's memory of recently projected sagas' events (see :class:`OrderHistoryCache`)."""

from __future__ import annotations

from collections import OrderedDict

from projections.model import LoggedEvent


class OrderHistoryCache:
    """The logged events of recently projected orders, so that a batch refolds an order from
    memory instead of reading its whole history back from the log (which was most of the
    projector's database time).

    An entry is used only when its length equals the saga's ``event_count`` in
    ``saga_status`` (written in the same transaction as the log rows): the log is
    append-only and never holds a record twice, so equal counts mean the same rows, whoever
    wrote them (another replica, a rebuild's swap). Entries change only when the batch that
    produced them commits (:meth:`commit`; :meth:`discard` on a rollback). Least recently
    used orders are evicted beyond ``max_orders``.
    """

    def __init__(self, max_orders: int) -> None:
        self.max_orders = max_orders
        self.hits = 0
        self.misses = 0
        self._orders: OrderedDict[str, list[LoggedEvent]] = OrderedDict()
        self._staged: dict[str, list[LoggedEvent]] = {}

    def history(self, order_id: str, event_count: int) -> list[LoggedEvent] | None:
        """The order's logged events if the cache holds all ``event_count`` of them."""
        events = self._orders.get(order_id)
        if events is None or len(events) != event_count:
            self.misses += 1
            return None
        self.hits += 1
        self._orders.move_to_end(order_id)
        return events

    def stage(self, order_id: str, events: list[LoggedEvent]) -> None:
        self._staged[order_id] = events

    def commit(self) -> None:
        for order_id, events in self._staged.items():
            self._orders[order_id] = events
            self._orders.move_to_end(order_id)
        self._staged.clear()
        while len(self._orders) > self.max_orders:
            self._orders.popitem(last=False)

    def discard(self) -> None:
        self._staged.clear()
