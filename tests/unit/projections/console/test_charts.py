"""The latency chart's geometry: lines broken where a minute has no finished saga."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from projections.console.charts import columns, lines

T = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _minute(i: int, p50: float | None, p95: float | None, n: int = 0) -> dict[str, object]:
    return {"minute": (T + timedelta(minutes=i)).isoformat(), "n": n, "p50": p50, "p95": p95}


def test_a_minute_without_data_breaks_the_lines():
    series = [
        _minute(0, 100, 400, 2),
        _minute(1, 200, 900, 3),
        _minute(2, None, None),
        _minute(3, 50, 1000, 1),
    ]
    chart = lines(series, width=300, height=100)
    assert chart.top == 1000
    assert chart.p95 == ["0.0,60.0 100.0,10.0", "300.0,0.0"]
    assert chart.p50 == ["0.0,90.0 100.0,80.0", "300.0,95.0"]
    assert [p.n for p in chart.points] == [2, 3, 1]
    assert chart.points[1].title == "12:01: p50 200 ms, p95 900 ms, 3 finished"
    assert (chart.first, chart.last) == ("12:00", "12:03")


def test_no_data_no_points():
    chart = lines([_minute(0, None, None), _minute(1, None, None)])
    assert chart.points == []
    assert chart.p50 == []


def test_columns_count_the_key_they_are_given():
    minute = datetime(2026, 12, 5, 16, 40, tzinfo=UTC)
    series = [
        {"minute": (minute + timedelta(minutes=i)).isoformat(), "started": n}
        for i, n in enumerate((0, 3, 7))
    ]
    chart = columns(series, "started")
    assert [bar.value for bar in chart.bars] == [0, 3, 7]
    assert chart.top == 10
    assert chart.bars[2].title == "16:42: 7"
    assert chart.bars[0].height == 0
    assert chart.bars[2].height == chart.height * 0.7


def test_what_a_saga_started_with_reads_as_names_and_money() -> None:
    from projections.console.charts import captured

    start = {"order_id": "ord-1", "customer_id": None, "refund_minor": 1_250, "currency": "EUR"}
    assert captured(start) == [("order id", "ord-1", None), ("refund", "12.50 EUR", None)]
    # Without an amount the currency is a field like any other.
    assert captured({"currency": "EUR", "count": 3}) == [
        ("currency", "EUR", None),
        ("count", "3", None),
    ]
    assert captured({}) == []


def test_another_sagas_key_links_to_its_page() -> None:
    from projections.console.charts import captured

    start = {"order_id": "ord 1/a", "customer_id": "c-1", "refund_minor": 100, "currency": "EUR"}
    keyed_by = {"order_id": "order", "return_id": "return"}
    assert captured(start, keyed_by) == [
        ("order id", "ord 1/a", "/console/sagas/order/ord%201%2Fa"),  # the key, escaped
        ("customer id", "c-1", None),
        ("refund", "1.00 EUR", None),  # an amount is never a key
    ]
