"""The pure parts of the benchmark report: percentiles, rates, ratios, the plot."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from bench.report import (
    LatencySummary,
    Ratio,
    per_second,
    percentile,
    ratio_table,
    rolling_percentiles,
    write_plot,
)


def test_percentile_interpolates_between_ranks_like_numpy():
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 0) == 15
    assert percentile(values, 50) == 35
    assert percentile(values, 100) == 50
    assert percentile(values, 40) == pytest.approx(29.0)  # numpy.percentile(values, 40)
    assert percentile(list(reversed(values)), 95) == pytest.approx(48.0)


def test_percentile_of_nothing_is_nan_and_out_of_range_is_refused():
    assert math.isnan(percentile([], 50))
    assert percentile([7.0], 99) == 7
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds():
    summary = LatencySummary.of([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == pytest.approx(100)
    assert summary.mean_ms == pytest.approx(50.5)
    assert math.isnan(LatencySummary.of([]).p95_ms)


def test_rolling_percentiles_slide_over_points_ordered_by_x():
    points = [(3.0, 30.0), (1.0, 10.0), (2.0, 20.0), (4.0, 40.0)]
    rolled = rolling_percentiles(points, window=2, quantiles=(50,))
    assert rolled == [(2.0, [15.0]), (3.0, [25.0]), (4.0, [35.0])]
    assert rolling_percentiles(points, window=10, quantiles=(100,)) == [(4.0, [40.0])]


def test_per_second_counts_events_in_whole_seconds():
    assert per_second([0.1, 0.9, 1.0, 3.5]) == [2, 1, 0, 1]
    assert per_second([]) == []


def test_ratio_is_choreo_over_baseline_and_the_table_shows_it():
    ratios = [
        Ratio("decode", "µs/event", 26.0, 20.0, "≤ 1.3x"),
        Ratio("events/s", "msg/s", 500.0, 0.0),
        Ratio("rows/s", "rows/s", 50.0, 40_000.0),
    ]
    assert ratios[0].ratio == pytest.approx(1.3)
    assert math.isnan(ratios[1].ratio)
    assert ratios[0].to_json()["ratio"] == 1.3
    assert ratios[2].to_json()["ratio"] == 0.00125
    assert ratios[1].to_json()["ratio"] is None
    console = Console(width=200, record=True)
    console.print(ratio_table(ratios))
    text = console.export_text()
    assert "1.3x" in text
    assert "26.0 µs/event" in text
    assert "≤ 1.3x" in text
    assert "0.00125x" in text  # small ratios keep their significant digits
    assert "-" in text.splitlines()[-3]  # no ratio against a zero baseline


def test_plot_is_written_as_png(tmp_path):
    latencies = [(i / 10, 0.05 + (i % 7) / 100) for i in range(200)]
    completions = [x + y for x, y in latencies]
    path = write_plot(
        tmp_path / "sub" / "bench.png", latencies, completions, placements=[x for x, _ in latencies]
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_plot_of_a_run_where_nothing_finished_is_still_written(tmp_path):
    path = write_plot(tmp_path / "empty.png", [], [])
    assert path.exists()


def test_the_per_process_table_reads_at_80_columns(tmp_path):
    # Names and headers were cut with an ellipsis there ("saga-co…", "consume…").
    import choreo.cli  # noqa: F401 - bench.cli is imported through the CLI, which mounts it
    from bench.cli import _process_table
    from bench.result import ProcessFigures, SagaConfig, SagaResult

    result = SagaResult(
        SagaConfig(orders=200),
        prefix="benchx.",
        log_dir=tmp_path,
        window_s=1.45,
        processes=[
            ProcessFigures(
                "saga-coordinator",
                1,
                consumed=1_680,
                consumed_per_s=1_158.0,
                cpu_s_total=1.6,
                cpu_s_run=0.4,
                peak_rss_mb=99.8,
            )
        ],
        infrastructure=[ProcessFigures("bench (this process)", 2, cpu_s_run=0.1)],
    )
    console = Console(width=80, record=True)
    console.print(_process_table(result))
    text = console.export_text()
    assert "…" not in text
    assert "saga-coordinator" in text
    assert "bench (this process)" in text
    assert max(len(line) for line in text.splitlines()) <= 80
