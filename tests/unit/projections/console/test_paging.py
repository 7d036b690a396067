"""The console lists' keyset pager: where a request asks to be, and the links of a page."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.console.paging import Position, cursor_text

T = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ROWS = [{"at": T.isoformat(), "key": f"k-{n}"} for n in (9, 8, 7)]


def _at(row: dict[str, str]) -> str:
    return cursor_text(row["at"], row["key"])


def test_without_a_cursor_it_is_the_first_page_whatever_the_number_says():
    at = Position.of(None, "garbage", 7)
    assert (at.cursor, at.direction, at.page) == (None, "older", 1)
    links = at.links(ROWS, 7, {"q": "k"}, _at, 3)
    assert (links["first"], links["last"], links["pages"]) == (1, 3, 3)
    assert links["newer"] is None
    assert links["older"] == {"q": "k", "after": f"{T.isoformat()}|k-7", "page": "2"}
    assert links["here"] == {"q": "k"}


def test_a_middle_page_links_both_ways_and_the_second_back_to_the_bare_first():
    after = cursor_text(T.isoformat(), "k-10")
    at = Position.of(after, None, 3)
    assert (at.cursor, at.direction) == ((T, "k-10"), "older")
    links = at.links(ROWS, 9, {}, _at, 3)
    assert (links["first"], links["last"], links["page"]) == (7, 9, 3)
    assert links["newer"] == {"before": f"{T.isoformat()}|k-9", "page": "2"}
    assert links["older"] is None  # the last page
    assert links["here"] == {"after": after, "page": "3"}
    second = Position.of(None, cursor_text(None, "k-6"), 2)
    assert (second.cursor, second.direction) == ((None, "k-6"), "newer")
    assert second.links(ROWS, 9, {}, _at, 3)["newer"] == {}


def test_an_empty_page_has_no_links():
    links = Position.of(None, None, 1).links([], 0, {}, _at, 25)
    assert (links["first"], links["last"], links["pages"]) == (0, 0, 1)
    assert links["newer"] is None
    assert links["older"] is None
