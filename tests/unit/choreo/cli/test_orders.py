"""`choreo orders place`: building an order from flags, files and samples; clear rejections."""

from __future__ import annotations

import json

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


def test_every_scenario_is_a_valid_order():
    for name in SCENARIOS:
        assert scenario_order(name).total_minor > 0


def test_help_explains_each_command():
    result = runner.invoke(app, ["orders", "place", "--help"])
    assert result.exit_code == 0
    assert "order.placed" in result.output
    assert "--sample" in result.output
