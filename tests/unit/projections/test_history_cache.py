"""The projector's in-memory order histories: used only when complete, changed on commit."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.history_cache import OrderHistoryCache
from projections.model import LoggedEvent

AT = datetime(2026, 1, 1, tzinfo=UTC)


def events(order_id: str, n: int) -> list[LoggedEvent]:
    return [LoggedEvent(f"{order_id}-{i}", "order.placed", order_id, AT, "t", {}) for i in range(n)]


def test_a_history_is_used_only_when_it_has_every_logged_event():
    cache = OrderHistoryCache(max_orders=10)
    cache.stage("o1", events("o1", 3))
    cache.commit()
    assert cache.history("o1", 3) == events("o1", 3)
    assert cache.history("o1", 4) is None  # someone else logged one more
    assert cache.history("o2", 1) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_staged_histories_count_only_after_commit():
    cache = OrderHistoryCache(max_orders=10)
    cache.stage("o1", events("o1", 2))
    assert cache.history("o1", 2) is None
    cache.discard()  # the batch rolled back
    cache.commit()
    assert cache.history("o1", 2) is None


def test_the_least_recently_used_orders_are_evicted():
    cache = OrderHistoryCache(max_orders=2)
    for order_id in ("o1", "o2"):
        cache.stage(order_id, events(order_id, 1))
    cache.commit()
    assert cache.history("o1", 1) is not None  # o1 is now the most recent
    cache.stage("o3", events("o3", 1))
    cache.commit()
    assert cache.history("o2", 1) is None
    assert cache.history("o1", 1) is not None
    assert cache.history("o3", 1) is not None
