"""The outbox rows a process published and has yet to delete (:class:`events.outbox.PublishedRows`):
each claimed by one transaction at a time, known until a claim ends well."""

from __future__ import annotations

import pytest

from events.outbox import PublishedRows


def test_a_claim_takes_every_waiting_row_and_forgets_them_when_it_ends_well():
    rows = PublishedRows()
    rows.add([1, 2])
    rows.add([3])

    with rows.claim() as first:
        assert first == [1, 2, 3]
        rows.add([4])  # published meanwhile: the next transaction's
        with rows.claim() as second:
            assert second == [4]
        assert sorted(rows.ids()) == [1, 2, 3]  # claimed, still known until the commit
    assert rows.ids() == []


def test_a_claim_that_raises_hands_its_rows_to_the_next():
    rows = PublishedRows()
    rows.add([7, 8])

    def transaction() -> None:
        with rows.claim() as claimed:
            assert claimed == [7, 8]
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        transaction()

    assert sorted(rows.ids()) == [7, 8]
    with rows.claim() as again:
        assert sorted(again) == [7, 8]
    assert rows.ids() == []


def test_a_claim_with_nothing_waiting_is_empty():
    with PublishedRows().claim() as claimed:
        assert claimed == []
