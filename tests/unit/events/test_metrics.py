"""Processed-message counts are tallied in a dict and reported as a cumulative counter."""

from __future__ import annotations

import threading

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum

from events.metrics import _Tally


def collected(reader: InMemoryMetricReader) -> dict[tuple[str, str, str], int]:
    data = reader.get_metrics_data()
    assert data is not None
    (metric,) = data.resource_metrics[0].scope_metrics[0].metrics
    assert metric.name == "choreo.events.processed"
    assert isinstance(metric.data, Sum)
    assert metric.data.is_monotonic
    return {
        (
            str(point.attributes["consumer"]),
            str(point.attributes["event_type"]),
            str(point.attributes["outcome"]),
        ): int(point.value)
        for point in metric.data.data_points
        if point.attributes is not None
    }


def tallied_meter() -> tuple[_Tally, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    tally = _Tally()
    MeterProvider(metric_readers=[reader]).get_meter("test").create_observable_counter(
        "choreo.events.processed", callbacks=[tally.observe]
    )
    return tally, reader


def test_counts_are_reported_by_label_and_stay_cumulative() -> None:
    tally, reader = tallied_meter()
    tally.add(("payment", "order.approved", "handled"), 1)
    tally.add(("payment", "order.approved", "handled"), 1)
    tally.add(("payment", "order.approved", "duplicate"), 1)
    tally.add(("projector", "*", "handled"), 40)
    assert collected(reader) == {
        ("payment", "order.approved", "handled"): 2,
        ("payment", "order.approved", "duplicate"): 1,
        ("projector", "*", "handled"): 40,
    }
    tally.add(("payment", "order.approved", "handled"), 3)
    assert collected(reader)[("payment", "order.approved", "handled")] == 5


def test_collecting_while_counting_from_another_thread_loses_nothing() -> None:
    tally, reader = tallied_meter()
    tally.add(("c", "type-0", "handled"), 1)
    done = threading.Event()

    def count() -> None:
        for n in range(20_000):
            tally.add(("c", f"type-{n % 50}", "handled"), 1)  # new keys while collecting
        done.set()

    counting = threading.Thread(target=count)
    counting.start()
    while not done.is_set():
        collected(reader)
    counting.join()
    assert sum(collected(reader).values()) == 20_001
