"""What the approvals page computes from a waiting saga's entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from projections.console.approvals import waiting
from projections.console.charts import span

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _entry(asked: datetime | None, expires: datetime | None) -> dict[str, object]:
    """A waiting saga as :func:`projections.waiting.waiting` lists it."""
    return {
        "saga": {"saga_type": "return", "saga_key": "ret-1"},
        "task": "approval",
        "requested_at": asked.isoformat() if asked else None,
        "expires_at": expires.isoformat() if expires else None,
        "on_timeout": "reject",
        "amounts": [
            {"name": "refund", "minor": 250_000, "currency": "EUR"},
            {"name": "threshold", "minor": 100_000, "currency": "EUR"},
        ],
    }


def test_waiting_counts_from_the_request_to_its_expiry():
    asked = NOW - timedelta(minutes=5)
    row = waiting(_entry(asked, asked + timedelta(hours=1)), NOW)
    assert row["waited_s"] == 300
    assert row["left_s"] == 3300
    assert (row["saga_type"], row["key"]) == ("return", "ret-1")
    assert row["amount"] == {"name": "refund", "minor": 250_000, "currency": "EUR"}
    assert [a["name"] for a in row["other_amounts"]] == ["threshold"]


def test_an_overdue_request_has_negative_time_left():
    row = waiting(_entry(NOW - timedelta(hours=2), NOW - timedelta(hours=1)), NOW)
    assert row["left_s"] == -3600


def test_without_times_nothing_is_counted():
    row = waiting({**_entry(None, None), "amounts": []}, NOW)
    assert row["waited_s"] is None
    assert row["left_s"] is None
    assert row["amount"] is None


def test_spans_read_as_people_say_them():
    assert span(None) == "—"
    assert span(12.7) == "12 s"
    assert span(245) == "4 min 05 s"
    assert span(-3 * 3600 - 20 * 60) == "3 h 20 min"
    assert span(2 * 86_400 + 4 * 3600 + 59) == "2 d 4 h"
