"""Keyset paging of the console's lists (orders, one saga type's sagas), newest first.

A page's position lives in the URL as the row it starts after (``after``: the older pages) or
ends before (``before``: back to newer ones), written ``<time ISO>|<key>`` (an empty time for
a row without one). A deep page costs what the first does (no OFFSET); the page number is
carried along for the "page N of M" line only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Cursor = tuple[datetime | None, str]
"""A row's place in a newest-first list: its time and its key."""


def cursor_text(moment: str | None, key: str) -> str:
    """A row's position as a URL value: ``<moment ISO>|<key>`` (empty moment: none)."""
    return f"{moment or ''}|{key}"


def parse_cursor(text: str | None) -> Cursor | None:
    """A position from :func:`cursor_text`; ``None`` if absent or malformed."""
    if not text or "|" not in text:
        return None
    moment, key = text.split("|", 1)
    try:
        return (datetime.fromisoformat(moment) if moment else None, key)
    except ValueError:
        return None


@dataclass(frozen=True)
class Position:
    """Where a request asks a list to be: the cursor, which way from it, and the page number."""

    cursor: Cursor | None
    direction: Literal["older", "newer"]
    page: int
    after: str | None
    before: str | None

    @classmethod
    def of(cls, after: str | None, before: str | None, page: int) -> Position:
        """From the URL's ``after``, ``before`` and ``page`` (page 1 without a cursor)."""
        older = parse_cursor(after)
        cursor = older or parse_cursor(before)
        direction: Literal["older", "newer"] = "newer" if cursor and older is None else "older"
        return cls(cursor, direction, page if cursor else 1, after, before)

    def links(
        self,
        rows: list[dict[str, Any]],
        total: int,
        query: dict[str, str],
        position_of: Callable[[dict[str, Any]], str],
        size: int,
    ) -> dict[str, Any]:
        """What a list's pager shows for ``rows`` (this page's, newest first) of ``total``:
        the page line (``first`` to ``last`` of ``total``, ``page`` of ``pages``), the links to
        the newer and older pages (``None`` at either end), and ``here`` (this page's own
        query, for the live refresh). ``position_of(row)`` is a row's :func:`cursor_text`."""
        page, pages = self.page, max(1, -(-total // size))
        first = (page - 1) * size + 1 if rows else 0
        newer = older = None
        if rows and page > 1:
            newer = query | (
                {"before": position_of(rows[0]), "page": str(page - 1)} if page > 2 else {}
            )
        if rows and page < pages:
            older = query | {"after": position_of(rows[-1]), "page": str(page + 1)}
        here = dict(query)
        if self.cursor is not None:  # the cursor as given, when it is one
            given = self.after if self.direction == "older" else self.before
            here["after" if self.direction == "older" else "before"] = given or ""
        return {
            "total": total,
            "page": page,
            "pages": pages,
            "first": first,
            "last": first + len(rows) - 1 if rows else 0,
            "newer": newer,
            "older": older,
            "query": query,
            "here": here | ({"page": str(page)} if page > 1 else {}),
        }
