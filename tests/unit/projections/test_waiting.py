"""What the inbox of human tasks makes of a waiting saga's row (:mod:`projections.waiting`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import orjson

from projections.amounts import amounts
from projections.waiting import RequestTimes, entry
from sagas.shipped import SAGAS

ASKED = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _times(request: Mapping[str, object] | None, version: int = 1) -> dict[str, object]:
    """What the inbox's first query reads of an order waiting on its approval."""
    request = request or {}
    return {
        "saga_type": "order", "saga_key": "ord-1", "version": version, "task": "approval",
        "started_at": ASKED.isoformat(), "requested": ASKED if request else None,
        "requested_at": request.get("requested_at"), "expires_at": request.get("expires_at"),
    }  # fmt: skip


def test_the_request_says_when_it_was_asked_and_expires():
    expires = ASKED + timedelta(minutes=30)
    asked = ASKED - timedelta(seconds=1)
    request = {"requested_at": asked.isoformat(), "expires_at": expires.isoformat()}
    assert RequestTimes.of(SAGAS, _times(request)) == RequestTimes(asked, expires)


def test_without_an_expiry_it_is_asked_plus_the_tasks_timeout_with_the_knobs_in_force():
    two_hours = SAGAS.with_knobs({"approval_timeout": timedelta(hours=2)})
    assert RequestTimes.of(two_hours, _times({"total_minor": 1})).expires == ASKED + timedelta(
        hours=2
    )
    # No request in the log: since the step started.
    assert RequestTimes.of(SAGAS, _times(None)) == RequestTimes(ASKED, ASKED + timedelta(days=1))
    # A time without a zone is UTC; one that is no time is not read.
    naive = {"requested_at": "2026-12-05T09:00:00", "expires_at": "soon"}
    assert RequestTimes.of(SAGAS, _times(naive)) == RequestTimes(ASKED, ASKED + timedelta(days=1))


def test_a_saga_on_a_version_this_process_lacks_has_no_expiry_and_no_action():
    times = RequestTimes.of(SAGAS, _times({"total_minor": 1}, version=99))
    assert times == RequestTimes(ASKED, None)
    assert entry(SAGAS, {**_row(), "version": 99}, times)["on_timeout"] == "-"


def test_an_entry_is_the_sagas_row_with_its_task_times_action_and_amounts():
    escalating = SAGAS.with_knobs({"approval_timeout_action": "escalate"})
    times = RequestTimes(ASKED, ASKED + timedelta(hours=1))
    e = entry(escalating, _row(), times)
    assert (e["saga"]["saga_key"], e["saga"]["status"]) == ("ord-1", "awaiting_approval")
    assert (e["task"], e["on_timeout"]) == ("approval", "escalate")
    assert e["escalated"] is False
    assert e["requested_at"] == ASKED.isoformat()
    assert e["expires_at"] == (ASKED + timedelta(hours=1)).isoformat()
    assert e["amounts"] == [{"name": "total", "minor": 2599, "currency": "EUR"}]


def _row() -> dict[str, object]:
    """The ``saga_status`` row of an order waiting on its approval, as the inbox's second
    query reads it (with the task and the request's payload)."""
    step = {"step": "approval", "state": "awaiting", "started_at": ASKED.isoformat()}
    return {
        "saga_type": "order", "saga_key": "ord-1", "version": 1, "status": "awaiting_approval",
        "milestone": "reserved", "reason": None, "current_steps": ["approval"],
        "steps_done": 1, "steps_expected": 6, "started_at": ASKED, "updated_at": ASKED,
        "ended_at": None, "timeline": orjson.dumps([step]).decode(), "compensations": "[]",
        "event_count": 3, "trace_id": None, "attributes": "{}", "task": "approval",
        "request": orjson.dumps({"total_minor": 2599, "currency": "EUR"}).decode(),
    }  # fmt: skip


def test_only_whole_amounts_in_minor_units_are_shown():
    request = {"total_minor": 2599, "currency": "EUR", "threshold_minor": 1000,
               "flag_minor": True, "note_minor": "12", "customer_id": "cust-1"}  # fmt: skip
    assert amounts(request) == [
        {"name": "total", "minor": 2599, "currency": "EUR"},
        {"name": "threshold", "minor": 1000, "currency": "EUR"},
    ]
