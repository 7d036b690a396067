"""`choreo orders place`: building an order from flags, files and samples; clear rejections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from choreo.cli import app
from choreo.cli.orders import _order_from_input, _parse_item
from contracts.samples import SCENARIOS, scenario_order

runner = CliRunner()


def test_item_price_is_parsed_into_minor_units():
    assert _parse_item("SKU-RED-MUG:2:12.50") == {
        "sku": "SKU-RED-MUG",
        "quantity": 2,
        "unit_price_minor": 1250,
    }


@pytest.mark.parametrize("text", ["nonsense", "SKU:two:1.00", "SKU:1:1.005"])
def test_malformed_items_are_rejected_with_the_expected_form(text):
    with pytest.raises(typer.BadParameter, match="SKU:QUANTITY:UNIT_PRICE"):
        _parse_item(text)


def test_flags_override_the_sample_and_the_total_follows_the_items():
    order = _order_from_input(
        None,
        "happy",
        {"items": [_parse_item("SKU-BLUE-PEN:3:2.00")], "country": "FR", "token": "tok_x"},
    )
    assert order.total_minor == 600
    assert order.shipping_address.country_code == "FR"
    assert order.payment_token == "tok_x"
    assert order.customer_email == scenario_order("happy").customer_email


def test_an_order_file_is_validated(tmp_path):
    data = scenario_order("happy").model_dump(mode="json")
    del data["placed_at"]
    path = tmp_path / "order.json"
    path.write_text(json.dumps(data))
    order = _order_from_input(path, None, {})
    assert order.items == scenario_order("happy").items


def test_invalid_fields_are_named_and_exit_with_code_2():
    result = runner.invoke(
        app,
        ["orders", "place", "--sample", "happy", "--email", "not-an-email", "--country", "de"],
    )
    assert result.exit_code == 2
    assert "customer_email" in result.output
    assert "shipping_address.country_code" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["orders", "place", "--sample", "nope"],
         "invalid order: unknown scenario 'nope'; one of: happy,"),
        (["returns", "request", "ord-1", "--sample", "nope"],
         "invalid return: unknown return scenario 'nope'; one of: happy,"),
    ],
)  # fmt: skip
def test_an_unknown_sample_is_named_on_stderr(args: list[str], said: str):
    # The message was the KeyError's repr, in quotes; a return's went to stdout.
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert said in result.stderr


def test_every_scenario_is_a_valid_order():
    for name in SCENARIOS:
        assert scenario_order(name).total_minor > 0


def test_help_explains_each_command():
    result = runner.invoke(app, ["orders", "place", "--help"])
    assert result.exit_code == 0
    assert "order.placed" in result.output
    assert "--sample" in result.output


def _listed_order(order_id: str, status: str, reason: str | None, step: str | None) -> dict:
    return {
        "order_id": order_id, "status": status, "cancel_reason": reason, "current_step": step,
        "progress": {"done": 2, "expected": 5}, "total_minor": 4_950_000, "currency": "EUR",
        "placed_at": "2026-12-05T04:53:18.608000+00:00",
    }  # fmt: skip


def test_the_list_reads_at_80_columns(monkeypatch):
    from choreo.cli import orders as orders_cli

    rows = [
        _listed_order("ord-e3853ed1b1e4", "cancelled", "payment_declined", None),
        _listed_order("ord-b1b28ec18eb7", "awaiting_approval", None, "approval"),
    ]
    monkeypatch.setattr(orders_cli, "query", lambda call: rows)
    result = runner.invoke(app, ["orders", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output
    # Ids, statuses and their reasons whole, each on its line; the time without year.
    for text in ("ord-e3853ed1b1e4", "ord-b1b28ec18eb7", "awaiting_approval", "payment_declined",
                 "approval", "12-05 04:53", "2/5"):  # fmt: skip
        assert text in result.output, text


def test_status_reads_at_80_columns(monkeypatch):
    from choreo.cli import orders as orders_cli

    row = {
        "order_id": "ord-9233be4d4bad", "status": "completed", "cancel_reason": None,
        "current_step": None, "progress": {"done": 5, "expected": 5},
        "timeline": [{"step": "payment", "kind": "step", "critical": True,
                      "state": "succeeded", "on_path": True, "reason": None, "detail": None,
                      "started_at": "2026-12-05T04:53:18.766000+00:00",
                      "started_by": "order.approved",
                      "finished_at": "2026-12-05T04:53:18.950000+00:00",
                      "finished_by": "payment.charged"}],
        "compensations_done": [], "trace_id": "a2b5b99ee891a95cac0b6561034754b5",
        "updated_at": "2026-12-05T04:53:19.008000+00:00", "customer_id": "cust-0001",
        "total_minor": 123_456, "currency": "EUR",
    }  # fmt: skip
    monkeypatch.setattr(orders_cli, "query", lambda call: row)
    result = runner.invoke(app, ["orders", "status", "ord-9233be4d4bad"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "trace    a2b5b99ee891a95cac0b6561034754b5" in lines
    assert "updated  2026-12-05 04:53:19.008 UTC" in lines
    assert "payment.charged" in result.output  # what settled the step, under its time
    assert "customer cust-0001, total 1,234.56 EUR" in lines


@pytest.mark.parametrize(
    ("command", "content", "said"),
    [
        (["orders", "place"], "[]", "holds an array, not a JSON object of the event's fields"),
        (["returns", "request", "ord-1"], '"x"', "holds a string, not a JSON object"),
        (
            ["orders", "place"],
            '{"items": [{"sku": "SKU-1", "quantity": "two", "unit_price_minor": 100}]}',
            "items.0.quantity: Input should be a valid integer",
        ),
    ],
)
def test_a_file_of_another_shape_is_refused_with_its_reason(
    tmp_path: Path, command: list[str], content: str, said: str
) -> None:
    file = tmp_path / "input.json"
    file.write_text(content)
    result = CliRunner().invoke(app, [*command, "--file", str(file)], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert said in result.output
