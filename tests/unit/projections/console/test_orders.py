"""The orders list's URL values: the keyset cursor and the form's UTC times."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.console.orders import cursor_text, form_time
from projections.console.paging import parse_cursor

T = datetime(2026, 11, 21, 12, 0, 5, 123_456, tzinfo=UTC)


def test_a_cursor_round_trips_even_with_a_bar_in_the_order_id():
    text = cursor_text({"placed_at": T.isoformat(), "order_id": "ord|odd"})
    assert parse_cursor(text) == (T, "ord|odd")


def test_an_order_not_placed_yet_has_a_cursor_without_a_time():
    assert parse_cursor(cursor_text({"placed_at": None, "order_id": "ord-x"})) == (None, "ord-x")


def test_a_malformed_cursor_is_no_cursor():
    assert parse_cursor(None) is None
    assert parse_cursor("ord-x") is None
    assert parse_cursor("yesterday|ord-x") is None


def test_form_times_are_utc_and_blank_or_bad_ones_none():
    assert form_time("2026-11-21T12:00") == datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert form_time("  ") is None
    assert form_time("soon") is None
