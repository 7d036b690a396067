"""The event_log row as the projector and a rebuild build it."""

from __future__ import annotations

from typing import Any

from projections.store import EVENT_LOG_COLUMNS, LogRow


def test_a_log_row_is_its_copy_record_in_column_order() -> None:
    # The row goes to COPY as itself: its fields must be the table's columns, in order.
    assert LogRow._fields == EVENT_LOG_COLUMNS
    values: list[Any] = [f"v{i}" for i in range(len(EVENT_LOG_COLUMNS))]
    row = LogRow(*values)
    assert dict(zip(EVENT_LOG_COLUMNS, row.as_tuple(), strict=True))["payload"] == "v12"
