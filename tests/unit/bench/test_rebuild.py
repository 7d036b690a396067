"""The synthetic order flows `choreo bench rebuild` writes."""

from __future__ import annotations

import itertools
from collections import Counter

from bench.rebuild import FLOWS, flow, synthetic_events


def test_a_flow_is_one_causal_chain_of_one_order():
    messages = flow("ord-1", "shipment_failed")
    assert [m.envelope.event_type for m in messages] == list(FLOWS["shipment_failed"])
    assert {m.saga_key for m in messages} == {"ord-1"}
    for before, after in itertools.pairwise(messages):
        assert after.envelope.causation_id == str(before.envelope.event_id)
    assert messages[-1].event.reason == "shipment_failed"  # type: ignore[attr-defined]


def test_exactly_the_asked_number_of_events_in_complete_flows():
    events = list(synthetic_events(1000))
    assert len(events) == 1000
    per_order = Counter(m.saga_key for m in events)
    complete = {len(types) for types in FLOWS.values()}
    assert all(n in complete for n in list(per_order.values())[:-1])
    assert {m.envelope.event_type for m in events} >= {"order.completed", "order.cancelled"}


def test_rebuild_lanes_group_partitions_by_number_so_that_orders_stay_whole():
    from aiokafka import TopicPartition

    from projections.rebuild import _lanes

    parts = [TopicPartition(t, p) for t in ("a.order", "a.payment") for p in range(3)]
    assert _lanes(parts, 2) == [
        [TopicPartition("a.order", 0), TopicPartition("a.order", 2),
         TopicPartition("a.payment", 0), TopicPartition("a.payment", 2)],
        [TopicPartition("a.order", 1), TopicPartition("a.payment", 1)],
    ]  # fmt: skip
    assert len(_lanes(parts, 8)) == 3  # at most one lane per partition number
    # Unequal partition counts: still by number (orders split across lanes are folded again
    # from the whole log before the swap).
    uneven = [*parts, TopicPartition("a.email", 3)]
    assert _lanes(uneven, 2) == [
        [TopicPartition("a.order", 0), TopicPartition("a.order", 2),
         TopicPartition("a.payment", 0), TopicPartition("a.payment", 2)],
        [TopicPartition("a.order", 1), TopicPartition("a.payment", 1),
         TopicPartition("a.email", 3)],
    ]  # fmt: skip


def test_rebuild_lanes_by_default_share_the_partition_numbers_evenly_over_the_cpus(
    monkeypatch,
):
    from aiokafka import TopicPartition

    from projections.rebuild import _lanes

    monkeypatch.setattr("os.cpu_count", lambda: 2)

    def sizes(numbers: int) -> list[int]:
        parts = [TopicPartition("a.order", p) for p in range(numbers)]
        return [len(lane) for lane in _lanes(parts, 0)]

    assert sizes(3) == [1, 1, 1]  # not [2, 1]: that lane would take twice as long
    assert sizes(4) == [2, 2]
    assert sizes(5) == [2, 2, 1]
    assert sizes(12) == [6, 6]
    assert sizes(1) == [1]


def test_machine_cpu_per_event_is_the_best_rounds_over_the_events():
    from bench.rebuild import RebuildBenchResult
    from projections.rebuild import RebuildReport

    result = RebuildBenchResult(
        events=1000, prefix="p.", produce_s=1.0, raw_events=1000, raw_s=0.5,
        rebuild=RebuildReport(events=1000, seconds=0.8),
        raw_cpu_rounds_s=[0.06, 0.05], rebuild_cpu_rounds_s=[0.2, 0.1, 0.15],
    )  # fmt: skip
    assert result.cpu_us_per_event == (50.0, 100.0)
    figures = result.to_json()["machine_cpu_us_per_event"]
    assert (figures["raw"], figures["rebuild"]) == (50.0, 100.0)
    assert figures["rebuild_rounds_s"] == [0.2, 0.1, 0.15]


def test_the_verdict_is_against_the_ratio_target():
    from bench.rebuild import RATIO_TARGET, RebuildBenchResult
    from projections.rebuild import RebuildReport

    def targets(rebuild_s: float) -> dict[str, object]:
        result = RebuildBenchResult(
            events=1000, prefix="p.", produce_s=1.0, raw_events=1000, raw_s=0.5,
            rebuild=RebuildReport(events=1000, seconds=rebuild_s),
        )  # fmt: skip
        return result.to_json()["targets"]

    assert targets(0.5 / 0.7) == {  # 0.7x the raw read
        "ratio_at_least": RATIO_TARGET, "events_per_s_at_least": 100_000,
        "ratio_met": False, "rate_met": False,
    }  # fmt: skip
    assert targets(0.5 / 0.9)["ratio_met"] is True


def test_the_machines_busy_cpu_counts_this_process():
    import time

    from bench.measure import machine_busy_s

    busy, own = machine_busy_s(), time.process_time()
    while time.process_time() - own < 0.3:  # burn 0.3 s of this process's CPU
        pass
    # The machine was busy at least while this process ran (clock ticks: 10 ms each).
    assert machine_busy_s() - busy >= time.process_time() - own - 0.05
