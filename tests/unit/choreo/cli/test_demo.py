"""`choreo demo`'s table reads at 80 columns (`make run` in a terminal of that size, or piped):
keys whole, to copy into `choreo orders status`, reasons never cut, what each path shows as a
legend under the table; from 140 columns it is the table's last column."""

from __future__ import annotations

from typing import cast

import pytest
from rich.console import Console, Group, RenderableType
from rich.table import Table

from choreo.cli.common import WIDE
from choreo.cli.demo import _say_unexpected, _view
from choreo.demo import DemoSaga


def _sagas() -> list[DemoSaga]:
    declined = DemoSaga("order", "declined", "ord-975a4932d748", "cancelled", "payment_declined")
    bounce = DemoSaga("order", "bounce", "ord-edfd58cad5b2", "completed")
    bounce.notes = ["confirmation email failed: the mailbox at bounce.example rejected it"]
    unpaid = DemoSaga("return", "unpaid", "ret-7d2cd3e680ea", "cancelled", "refund_declined")
    happy = DemoSaga("order", "happy", "ord-5c2192d9e3b8", "started")
    return [declined, bounce, unpaid, happy]


def _render(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(_view(_sagas(), console.width))
    return console.export_text()


def test_at_80_columns_keys_and_reasons_are_whole_and_paths_follow_as_a_legend():
    text = _render(80)
    assert "…" not in text
    for saga in _sagas():
        assert f" {saga.key} " in text  # on one line, whole
    assert "payment_declined" in text
    assert "refund_declined" in text
    legend = text.split("What each path shows:")[1]
    assert "order declined" in legend
    assert "token tok_declined" in legend
    assert "return unpaid" in legend
    assert "what it shows" not in _headers(_view(_sagas(), 80))
    assert max(len(line) for line in text.splitlines()) <= 80


def _headers(view: RenderableType) -> list[str]:
    """The headers of the view's table (its text wraps a header, so read the columns)."""
    table = view if isinstance(view, Table) else next(
        r for r in cast(Group, view).renderables if isinstance(r, Table)
    )  # fmt: skip
    return [str(c.header) for c in table.columns]


def test_wide_terminals_have_what_each_path_shows_as_a_column():
    text = _render(WIDE)
    assert _headers(_view(_sagas(), WIDE))[-1] == "what it shows"
    assert "what it shows" in text
    assert "What each path shows:" not in text
    assert "…" not in text
    assert " ord-975a4932d748 " in text


def test_before_any_saga_starts_the_table_is_empty_without_a_legend():
    console = Console(width=80, record=True, color_system=None)
    console.print(_view([], 80))
    text = console.export_text()
    assert "key" in text
    assert "What each path shows:" not in text


def test_a_saga_the_demo_approved_says_so_beside_its_waiting():
    large = DemoSaga("order", "large", "ord-1f2dd1b6f389", "completed")
    assert large.shows.endswith("waits for `choreo orders approve|reject`")
    large.approved = True
    assert large.shows.endswith("waits for `choreo orders approve|reject`; the demo approved it")


def test_sagas_that_end_as_their_paths_do_are_not_named(capsys: pytest.CaptureFixture[str]):
    sagas = _sagas()  # declined, bounce and unpaid ended as their paths do; happy still runs

    _say_unexpected(sagas)

    assert not any(s.unexpected for s in sagas)
    assert capsys.readouterr().err == ""


def test_an_order_cancelled_out_of_stock_on_a_path_that_completes_names_the_used_up_stock(
    capsys: pytest.CaptureFixture[str],
):
    happy = DemoSaga("order", "happy", "ord-e5033abf81cc", "cancelled", "out_of_stock")
    vase = DemoSaga("order", "out_of_stock", "ord-06942e41dc0d", "cancelled", "out_of_stock")

    _say_unexpected([happy, vase])

    err = " ".join(capsys.readouterr().err.split())
    said = "order happy (ord-e5033abf81cc) ended cancelled:out_of_stock; its path ends completed"
    assert said in err
    assert "ord-06942e41dc0d" not in err  # its path is the one that runs out
    assert "used up the stock" in err
    assert "`make clean`" in err


def test_another_unexpected_end_points_to_the_sagas_history(capsys: pytest.CaptureFixture[str]):
    flaky = DemoSaga("order", "flaky", "ord-1", "cancelled", "payment_timeout")

    _say_unexpected([flaky])

    err = " ".join(capsys.readouterr().err.split())
    assert "ended cancelled:payment_timeout; its path ends completed" in err
    assert "choreo sagas history TYPE KEY" in err
    assert "make clean" not in err
