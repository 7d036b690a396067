"""Every newer schema version reads data written with every older one (BACKWARD compatible).

Checked twice: statically with :func:`events.compat.backward_problems` (the Avro resolution
rules), and empirically by decoding random records written with the old schema through fastavro
with the new schema as the reader. The checker itself is shown to reject incompatible pairs.
"""

from __future__ import annotations

import json
import random
import re
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException
from fastavro.utils import generate_many

from tests.unit.contracts.avro_compat import (
    backward_problems,
    forward_problems,
    is_backward_compatible,
)

SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"
VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")
SAMPLES = 50


def load(path: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(path.read_text())
    return raw


def all_versions() -> dict[str, dict[int, Path]]:
    """``{event_type: {N: path}}`` for every schema file."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(SCHEMAS_DIR.glob("*/*.avsc")):
        match = VERSION_FILE.match(path.name)
        if match is not None:
            found.setdefault(path.parent.name, {})[int(match.group(1))] = path
    return found


VERSIONS = all_versions()
PAIRS = [
    pytest.param(event_type, old, new, id=f"{event_type}-v{old}-v{new}")
    for event_type, by_number in sorted(VERSIONS.items())
    for old in sorted(by_number)
    for new in sorted(by_number)
    if old < new
]
FILES = [
    pytest.param(event_type, n, id=f"{event_type}-v{n}")
    for event_type, by_number in sorted(VERSIONS.items())
    for n in sorted(by_number)
]


def read_with(writer: Any, reader: Any, records: list[Any]) -> list[Any]:
    """Write each record with ``writer`` and decode it with ``reader`` (both parsed)."""
    decoded = []
    for record in records:
        buffer = BytesIO()
        schemaless_writer(buffer, writer, record)
        buffer.seek(0)
        decoded.append(schemaless_reader(buffer, writer, reader))
        assert buffer.read() == b"", "the reader left bytes unread"
    return decoded


def samples(parsed: Any, seed: str) -> list[Any]:
    random.seed(seed)  # generate_many draws from the global random: keep runs reproducible
    return list(generate_many(parsed, SAMPLES))


def test_there_is_something_to_check() -> None:
    assert PAIRS, "no event type has two versions; the compatibility tests would be vacuous"
    assert "order.placed" in VERSIONS
    assert len(VERSIONS["order.placed"]) >= 2


# --------------------------------------------------------------------------- the real schemas


@pytest.mark.parametrize(("event_type", "old", "new"), PAIRS)
def test_newer_version_resolves_older_one(event_type: str, old: int, new: int) -> None:
    writer = load(VERSIONS[event_type][old])
    reader = load(VERSIONS[event_type][new])
    problems = backward_problems(writer, reader)
    assert [str(p) for p in problems] == []


@pytest.mark.parametrize(("event_type", "old", "new"), PAIRS)
def test_newer_version_decodes_data_written_with_older_one(
    event_type: str, old: int, new: int
) -> None:
    writer = parse_schema(load(VERSIONS[event_type][old]))
    reader = parse_schema(load(VERSIONS[event_type][new]))
    records = samples(writer, f"{event_type}-v{old}")
    decoded = read_with(writer, reader, records)

    reader_fields = [f["name"] for f in load(VERSIONS[event_type][new])["fields"]]
    writer_fields = {f["name"] for f in load(VERSIONS[event_type][old])["fields"]}
    for original, record in zip(records, decoded, strict=True):
        assert list(record) == reader_fields
        written, read = original["envelope"], record["envelope"]
        key = written.get("saga_key", written.get("order_id"))
        if "saga_key" in read:  # order_id is read as saga_key (alias); saga_type defaults
            assert read["saga_key"] == key
            assert read["saga_type"] == written.get("saga_type", "order")
        else:
            assert read["order_id"] == key
        for name in writer_fields & set(reader_fields):
            if not isinstance(original[name], int | dict | list):  # not re-typed by logical types
                assert record[name] == original[name], name


@pytest.mark.parametrize(("event_type", "number"), FILES)
def test_every_version_resolves_against_itself(event_type: str, number: int) -> None:
    """Sanity: the checker walks every shape the catalog uses without a false alarm."""
    schema = load(VERSIONS[event_type][number])
    assert backward_problems(schema, schema) == []
    assert forward_problems(schema, schema) == []


# --------------------------------------------------------------------------- the checker


def record(*fields: dict[str, Any], name: str = "Thing") -> dict[str, Any]:
    envelope = {
        "name": "envelope",
        "type": {
            "type": "record",
            "name": "Meta",
            "fields": [{"name": "id", "type": "string"}],
        },
    }
    return {"type": "record", "name": name, "namespace": "t", "fields": [envelope, *fields]}


ITEM = {"type": "record", "name": "Item", "fields": [{"name": "sku", "type": "string"}]}
ITEM_WITH_QTY = {
    "type": "record",
    "name": "Item",
    "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}],
}
ITEM_WITH_QTY_DEFAULT = {
    "type": "record",
    "name": "Item",
    "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int", "default": 1}],
}
NAME = {"name": "name", "type": "string"}
COUNT_INT = {"name": "count", "type": "int"}
TIME_MILLIS = {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}

COMPATIBLE = [
    pytest.param(record(NAME), record(NAME), id="identical"),
    pytest.param(
        record(NAME),
        record(NAME, {"name": "note", "type": ["null", "string"], "default": None}),
        id="optional-field-added",
    ),
    pytest.param(
        record(NAME),
        record(NAME, {"name": "channel", "type": "string", "default": "web"}),
        id="field-with-default-added",
    ),
    pytest.param(record(NAME, COUNT_INT), record(NAME), id="field-removed"),
    pytest.param(
        record(COUNT_INT), record({"name": "count", "type": "long"}), id="int-promoted-to-long"
    ),
    pytest.param(
        record(COUNT_INT), record({"name": "count", "type": "double"}), id="int-promoted-to-double"
    ),
    pytest.param(record(NAME), record({"name": "name", "type": "bytes"}), id="string-to-bytes"),
    pytest.param(
        record(NAME),
        record({"name": "name", "type": ["null", "string"], "default": None}),
        id="field-made-optional",
    ),
    pytest.param(
        record({"name": "n", "type": ["null", "int"], "default": None}),
        record({"name": "n", "type": ["null", "long"], "default": None}),
        id="union-branch-promoted",
    ),
    pytest.param(
        record({"name": "items", "type": {"type": "array", "items": ITEM_WITH_QTY}}),
        record({"name": "items", "type": {"type": "array", "items": ITEM}}),
        id="nested-field-removed",
    ),
    pytest.param(
        record({"name": "items", "type": {"type": "array", "items": ITEM}}),
        record({"name": "items", "type": {"type": "array", "items": ITEM_WITH_QTY_DEFAULT}}),
        id="nested-field-with-default-added",
    ),
    pytest.param(
        record({"name": "old_name", "type": "string"}),
        record({"name": "new_name", "type": "string", "aliases": ["old_name"]}),
        id="field-renamed-with-alias",
    ),
    pytest.param(
        record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}),
        record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}),
        id="enum-symbol-added",
    ),
    pytest.param(
        record({"name": "m", "type": {"type": "map", "values": "int"}}),
        record({"name": "m", "type": {"type": "map", "values": "long"}}),
        id="map-values-promoted",
    ),
]

INCOMPATIBLE = [
    pytest.param(
        record(NAME),
        record(NAME, COUNT_INT),
        "Thing.count",
        "without a default",
        id="required-added",
    ),
    pytest.param(
        record(NAME),
        record({"name": "name", "type": "int"}),
        "Thing.name",
        "cannot be read as int",
        id="string-to-int",
    ),
    pytest.param(
        record({"name": "count", "type": "long"}),
        record(COUNT_INT),
        "Thing.count",
        "cannot be read as int",
        id="long-narrowed-to-int",
    ),
    pytest.param(
        record(NAME),
        record(NAME, name="Renamed"),
        "Renamed",
        "name changed",
        id="record-renamed",
    ),
    pytest.param(
        record({"name": "note", "type": ["null", "string"], "default": None}),
        record({"name": "note", "type": "string", "default": ""}),
        "Thing.note<null>",
        "cannot be read as string",
        id="optional-made-required",
    ),
    pytest.param(
        record(NAME),
        record({"name": "name", "type": ["null", "int"], "default": None}),
        "Thing.name",
        "the reader union has no branch",
        id="union-without-writer-type",
    ),
    pytest.param(
        record({"name": "items", "type": {"type": "array", "items": ITEM}}),
        record({"name": "items", "type": {"type": "array", "items": ITEM_WITH_QTY}}),
        "Thing.items[].qty",
        "without a default",
        id="nested-required-added",
    ),
    pytest.param(
        record(NAME),
        record(NAME, {"name": "note", "type": ["null", "string"], "default": "x"}),
        "Thing.note",
        "is not a valid null, the first branch",
        id="default-not-first-union-branch",
    ),
    pytest.param(
        record(NAME),
        record(NAME, {"name": "ns", "type": {"type": "array", "items": "int"}, "default": ["a"]}),
        "Thing.ns",
        "is not a valid array",
        id="default-of-wrong-type",
    ),
    pytest.param(
        record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}),
        record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}),
        "Thing.e",
        "['B']",
        id="enum-symbol-removed",
    ),
    pytest.param(
        record(TIME_MILLIS),
        record({"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}}),
        "Thing.at",
        "logical type changed",
        id="logical-type-changed",
    ),
    pytest.param(
        record({"name": "tags", "type": {"type": "array", "items": "string"}}),
        record({"name": "tags", "type": "string"}),
        "Thing.tags",
        "cannot be read as string",
        id="array-to-string",
    ),
    pytest.param(
        record(NAME),
        record({"name": "envelope", "type": "string"}, NAME),
        "Thing.envelope",
        "cannot be read as string",
        id="nested-record-to-string",
    ),
]


@pytest.mark.parametrize(("writer", "reader"), COMPATIBLE)
def test_checker_accepts_compatible_pairs(writer: Any, reader: Any) -> None:
    assert backward_problems(writer, reader) == []
    assert is_backward_compatible(writer, reader)
    # ...and fastavro agrees: every sample written with the writer decodes with the reader.
    parsed_writer, parsed_reader = parse_schema(writer), parse_schema(reader)
    read_with(parsed_writer, parsed_reader, samples(parsed_writer, json.dumps(reader)))


@pytest.mark.parametrize(("writer", "reader", "path", "message"), INCOMPATIBLE)
def test_checker_rejects_incompatible_pairs(
    writer: Any, reader: Any, path: str, message: str
) -> None:
    problems = backward_problems(writer, reader)
    assert not is_backward_compatible(writer, reader)
    assert any(p.path == path and message in p.message for p in problems), [
        str(p) for p in problems
    ]


def test_fastavro_confirms_a_rejection() -> None:
    """The checker's verdict on a new required field is what a real reader runs into."""
    writer, reader = record(NAME), record(NAME, COUNT_INT)
    assert backward_problems(writer, reader)
    with pytest.raises(SchemaResolutionError, match="count"):
        read_with(
            parse_schema(writer), parse_schema(reader), [{"envelope": {"id": "x"}, "name": "a"}]
        )


def test_checker_refuses_invalid_schemas() -> None:
    bad = record({"name": "count", "type": "int", "default": "zero"})
    with pytest.raises(SchemaParseException):
        backward_problems(record(NAME), bad)


def test_forward_is_backward_reversed() -> None:
    old, new = record(NAME), record(NAME, COUNT_INT)
    assert forward_problems(old, new) == []  # old readers skip the new field
    assert forward_problems(new, old) != []  # new readers need it from old data


def test_checker_accepts_parsed_schemas_and_named_references() -> None:
    """A named type used a second time is a reference by name; the checker follows it."""
    two_items = record(
        {"name": "first", "type": ITEM},
        {"name": "second", "type": "Item"},
    )
    two_items_with_qty = record(
        {"name": "first", "type": ITEM_WITH_QTY},
        {"name": "second", "type": "Item"},
    )
    assert backward_problems(parse_schema(two_items), parse_schema(two_items)) == []
    problems = backward_problems(two_items, two_items_with_qty)
    assert {p.path for p in problems} == {"Thing.first.qty", "Thing.second.qty"}
