"""An event schema's fields as `choreo schemas show` lists them: nested by path, the envelope
left out, types in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.schema_fields import payload_fields, type_name
from events.schemas import SchemaRegistry

SCHEMAS = SchemaRegistry.load(Path(__file__).resolve().parents[3] / "schemas")


def test_a_start_events_fields_nested_by_path_without_the_envelope():
    fields = {f.name: f for f in payload_fields(SCHEMAS.get("return.requested", 2).raw)}
    assert list(fields)[:6] == [
        "order_id", "customer_id", "customer_email", "items", "items[].sku", "items[].quantity",
    ]  # fmt: skip
    assert not [name for name in fields if name.split(".")[0] in ("envelope", "event_id")]
    assert fields["items"].type == "array of ReturnedItem"
    assert fields["requested_at"].type == "timestamp (ms)"
    line2 = fields["pickup_address.line2"]
    assert (line2.type, line2.required, line2.default) == ("string or null", False, None)
    condition = fields["items[].condition"]
    assert (condition.required, condition.default) == (False, "unopened")
    assert fields["order_id"].required
    assert fields["order_id"].doc == "The order the items were bought with."


def test_a_record_type_used_twice_is_expanded_once():
    address = {
        "type": "record",
        "name": "Address",
        "fields": [{"name": "city", "type": "string"}],
    }
    schema = {
        "type": "record",
        "name": "Moved",
        "fields": [
            {"name": "envelope", "type": "string"},
            {"name": "old", "type": address},
            {"name": "new", "type": "Address"},
        ],
    }
    assert [(f.name, f.type) for f in payload_fields(schema)] == [
        ("old", "Address"), ("old.city", "string"), ("new", "Address"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("avro_type", "words"),
    [
        (["null", "long"], "long or null"),
        ({"type": "enum", "name": "Channel", "symbols": ["web", "api"]}, "enum (web | api)"),
        ({"type": "map", "values": "int"}, "map of int"),
        (
            {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            "decimal(10, 2)",
        ),
        ({"type": "string", "logicalType": "uuid"}, "uuid"),
        ({"type": "int", "logicalType": "date"}, "date"),
        ({"type": "fixed", "name": "Digest", "size": 32}, "Digest"),
        ({"type": "array", "items": {"type": "map", "values": "string"}}, "array of map of string"),
        ({"type": "long"}, "long"),
    ],
)
def test_types_in_words(avro_type: object, words: str):
    assert type_name(avro_type) == words


def test_every_shipped_schema_version_is_listed():
    for event_type in SCHEMAS.event_types:
        for version in SCHEMAS.versions(event_type):
            fields = payload_fields(version.raw)
            top = [f.name for f in fields if "." not in f.name and "[]" not in f.name]
            assert top == [f["name"] for f in version.raw["fields"][1:]], version.path
