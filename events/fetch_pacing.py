"""Fetch pacing: whether the broker may hold a consumer's fetch to gather records.

Every fetch answered costs a consumer a poll (and a delivering one a transaction) and the
broker a request, whatever the number of records in it. Answered at the first record, a
consumer pays that for nearly every record once records arrive faster than it wakes up for
them: at 20 orders/s that per-record price, not the work of the handlers, took the two cores.
Held for a few tens of milliseconds, one fetch carries several records. At low load holding
saves nothing and only adds latency, so a paced consumer holds its fetches only while records
arrive faster than a threshold: like a network card's adaptive interrupt coalescing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FETCH_BATCH_BYTES = 1024 * 1024
"""The bytes a held fetch waits for: about a poll's worth of records, so that under load a
fetch is still answered at once."""
ANSWER_AT_ONCE = {"fetch_max_wait_ms": 500, "fetch_min_bytes": 1}
"""aiokafka's defaults: the broker answers as soon as one record is there (or after 500 ms
with none)."""
RATE_WINDOW_S = 0.5
"""How often the arrival rate is measured."""


@dataclass(frozen=True)
class FetchPacing:
    """``wait_ms``: how long the broker may hold a fetch (0: never). ``above_per_s``: hold
    only while records arrive at least this fast, and stop below half of it (0: always)."""

    wait_ms: int = 0
    above_per_s: float = 0.0

    @property
    def always(self) -> bool:
        return self.wait_ms > 0 and self.above_per_s <= 0

    @property
    def adaptive(self) -> bool:
        return self.wait_ms > 0 and self.above_per_s > 0

    def options(self, holding: bool) -> dict[str, int]:
        """Fetch options of an AIOKafkaConsumer that holds its fetches or answers at once."""
        if holding and self.wait_ms > 0:
            return {"fetch_max_wait_ms": self.wait_ms, "fetch_min_bytes": FETCH_BATCH_BYTES}
        return dict(ANSWER_AT_ONCE)


class ArrivalRate:
    """Counts polled records per :data:`RATE_WINDOW_S` and says when holding should start or
    stop. The gap between the two thresholds keeps it from flapping at the boundary."""

    def __init__(self, pacing: FetchPacing, clock: Callable[[], float] = time.monotonic) -> None:
        self.pacing = pacing
        self.clock = clock
        self.holding = False
        self.per_s = 0.0
        self._since = clock()
        self._records = 0

    def observe(self, records: int) -> bool | None:
        """Count a poll's records; returns the new state when holding starts or stops."""
        self._records += records
        now = self.clock()
        elapsed = now - self._since
        if elapsed < RATE_WINDOW_S:
            return None
        self.per_s = self._records / elapsed
        self._since, self._records = now, 0
        if not self.holding and self.per_s >= self.pacing.above_per_s:
            self.holding = True
            return True
        if self.holding and self.per_s < self.pacing.above_per_s / 2:
            self.holding = False
            return False
        return None


FETCHER_FIELDS = {"fetch_max_wait_ms": "_fetch_max_wait_ms", "fetch_min_bytes": "_fetch_min_bytes"}
"""Where aiokafka's Fetcher keeps the two fetch options; it reads them each time it builds a
fetch request, so changing them paces the next fetch (aiokafka has no public setter)."""


def can_repace(consumer: Any) -> bool:
    """Whether this aiokafka's started consumer keeps its fetch options where
    :func:`repace` changes them (a later aiokafka may not)."""
    fetcher = getattr(consumer, "_fetcher", None)
    return fetcher is not None and all(hasattr(fetcher, f) for f in FETCHER_FIELDS.values())


def repace(consumer: Any, options: dict[str, int]) -> None:
    """Apply fetch ``options`` to a started consumer's next fetches."""
    fetcher = consumer._fetcher
    for option, field in FETCHER_FIELDS.items():
        setattr(fetcher, field, options[option])
