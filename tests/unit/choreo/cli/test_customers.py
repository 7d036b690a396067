"""`choreo customers forget`: what it says and its exit codes, for each outcome (the key store
itself is exercised on the real stack: tests/integration/test_personal_data.py and
tests/e2e/test_forget_customer.py)."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from choreo.cli import app, customers
from choreo.customers import Forgotten, PlainEvent
from events.settings import Settings

runner = CliRunner()
OLD = PlainEvent("order.placed", "ord-1", "00000000-0000-0000-0000-000000000001", 3)


def answering(monkeypatch: pytest.MonkeyPatch, done: Forgotten) -> None:
    async def forget(settings: Settings, customer_id: str) -> Forgotten:
        assert customer_id == done.customer_id
        return done

    monkeypatch.setattr(customers, "forget_customer", forget)


def test_a_forgotten_customer_is_told_erased_and_exits_0(monkeypatch: pytest.MonkeyPatch):
    answering(monkeypatch, Forgotten("cus-1", key_deleted=True, log_checked=True))
    result = runner.invoke(app, ["customers", "forget", "cus-1"])
    assert result.exit_code == 0, result.output
    assert "customer cus-1 forgotten" in result.output
    assert "[erased]" in result.output


def test_events_from_before_sealing_are_listed_and_exit_3(monkeypatch: pytest.MonkeyPatch):
    answering(monkeypatch, Forgotten("cus-1", True, True, [OLD]))
    result = runner.invoke(app, ["customers", "forget", "cus-1"])
    assert result.exit_code == customers.PLAIN_LEFT == 3
    assert "1 event(s) of customer cus-1 were written before" in result.output
    assert "order.placed v3 ord-1" in result.output


def test_json_says_the_same(monkeypatch: pytest.MonkeyPatch):
    answering(monkeypatch, Forgotten("cus-1", key_deleted=False, log_checked=False))
    result = runner.invoke(app, ["customers", "forget", "cus-1", "--json"])
    assert result.exit_code == 0
    assert orjson.loads(result.stdout) == {
        "customer_id": "cus-1",
        "key_deleted": False,
        "log_checked": False,
        "plain_events": [],
    }
