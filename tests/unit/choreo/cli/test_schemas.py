"""`choreo schemas show`: one event's fields and an example; `choreo sagas start --example`
prints a file that `choreo sagas start` accepts."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from choreo.cli import app
from sagas.shipped import SAGAS

runner = CliRunner()


def test_show_as_json_has_the_fields_and_an_example_of_the_newest_version():
    result = runner.invoke(app, ["schemas", "show", "return.requested", "--json"])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    assert (shown["version"], shown["versions"]) == (2, [1, 2])
    assert shown["path"] == "schemas/return.requested/v2.avsc"
    names = [f["name"] for f in shown["fields"]]
    assert names[0] == "order_id"
    assert "pickup_address.country_code" in names
    assert shown["fields"][0] == {
        "name": "order_id", "type": "string", "required": True, "default": None,
        "doc": "The order the items were bought with.",
    }  # fmt: skip
    assert shown["example"]["reason"] == "wrong colour"


def test_an_older_version_has_its_own_fields_and_no_example():
    result = runner.invoke(app, ["schemas", "show", "order.placed", "--version", "1", "--json"])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    assert shown["version"] == 1
    assert "channel" not in [f["name"] for f in shown["fields"]]  # added in v2
    assert shown["example"] is None


def test_show_at_80_columns_cuts_nothing():
    result = runner.invoke(app, ["schemas", "show", "order.placed"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    for text in ("shipping_address.line2", "string or null", "Optional, default null.",
                 "array of LineItem", '"payment_token": "tok_visa"'):  # fmt: skip
        assert text in result.output, text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["nope.nothing"], "no schema for event type 'nope.nothing'; `choreo schemas list`"),
        (["order.placed", "--version", "99"], "no schema order.placed v99"),
    ],
)
def test_an_unknown_type_or_version_is_named(args: list[str], words: str):
    result = runner.invoke(app, ["schemas", "show", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert words in result.output


@pytest.mark.parametrize("saga_type", SAGAS.types)
def test_the_example_of_every_sagas_start_event_is_what_start_accepts(saga_type: str):
    result = runner.invoke(app, ["sagas", "start", saga_type, "--example"])
    assert result.exit_code == 0, result.output
    start = SAGAS.current(saga_type).start.event
    event = start.model_validate(orjson.loads(result.output))
    assert event.event_type == start.event_type


def test_start_without_a_file_points_at_the_example():
    result = runner.invoke(app, ["sagas", "start", "return"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "--file is required: the fields of return.requested as JSON" in result.output
    assert "choreo sagas start return --example" in result.output


def test_an_invalid_file_names_the_problems_and_where_the_fields_are(tmp_path):
    file = tmp_path / "return.json"
    file.write_text('{"return_id": "r-1"}')
    result = runner.invoke(
        app, ["sagas", "start", "return", "--file", str(file)], env={"COLUMNS": "1000"}
    )
    assert result.exit_code == 1
    assert "invalid return.requested: order_id: Field required" in result.output
    assert "return_id: Extra inputs are not permitted" in result.output
    assert "Its fields: `choreo schemas show return.requested`" in result.output
