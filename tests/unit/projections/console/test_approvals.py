"""What the approvals page computes from a waiting order's row and its approval request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from projections.console.approvals import timeout_action, waiting
from projections.console.charts import span
from sagas.shipped import SAGAS

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _row(request: dict[str, object] | None, started: datetime | None = None) -> dict[str, object]:
    return {
        "order_id": "ord-1",
        "total_minor": 250_000,
        "currency": "EUR",
        "timeline": [
            {"step": "inventory", "started_at": None},
            {"step": "approval", "started_at": started.isoformat() if started else None},
        ],
        "request": request,
    }


def test_waiting_counts_from_the_request_to_its_expiry():
    asked = NOW - timedelta(minutes=5)
    row = waiting(
        _row(
            {
                "requested_at": asked.isoformat(),
                "expires_at": (asked + timedelta(hours=1)).isoformat(),
                "threshold_minor": 100_000,
            }
        ),
        NOW,
    )
    assert row["waiting_since"] == asked.isoformat()
    assert row["waited_s"] == 300
    assert row["left_s"] == 3300
    assert row["amount_minor"] == 250_000
    assert row["threshold_minor"] == 100_000


def test_an_overdue_request_has_negative_time_left():
    asked = NOW - timedelta(hours=2)
    row = waiting(
        _row(
            {
                "requested_at": asked.isoformat(),
                "expires_at": (NOW - timedelta(hours=1)).isoformat(),
            }
        ),
        NOW,
    )
    assert row["left_s"] == -3600


def test_without_a_request_the_approval_step_tells_since_when_and_nothing_expires():
    row = waiting(_row(None, started=NOW - timedelta(seconds=42)), NOW)
    assert row["waited_s"] == 42
    assert row["left_s"] is None
    assert row["expires_at"] is None


def test_the_order_saga_rejects_when_an_approval_times_out():
    assert timeout_action(SAGAS, "order") == "reject"
    escalating = SAGAS.with_knobs({"approval_timeout_action": "escalate"})
    assert timeout_action(escalating, "order") == "escalate"


def test_spans_read_as_people_say_them():
    assert span(None) == "—"
    assert span(12.7) == "12 s"
    assert span(245) == "4 min 05 s"
    assert span(-3 * 3600 - 20 * 60) == "3 h 20 min"
    assert span(2 * 86_400 + 4 * 3600 + 59) == "2 d 4 h"
