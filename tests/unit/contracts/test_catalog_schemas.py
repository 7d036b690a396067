"""Every model of the catalog agrees with the newest Avro schema of its event type, and back.

The schemas in ``schemas/`` are the contract; the pydantic models in :mod:`events.catalog` are
how code speaks it. These tests keep the two from drifting: same fields, same types, same
defaults, a shared envelope, and a lossless round trip through Avro.
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import datetime
from inspect import isclass
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.validation import validate
from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

from contracts.catalog import CATALOG
from events.model import Envelope, Event, Message

SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"
VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def load(path: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(path.read_text())
    return raw


def versions(event_type: str) -> dict[int, Path]:
    """``{N: schemas/<event_type>/vN.avsc}`` for every well-named file of the event type."""
    found: dict[int, Path] = {}
    for path in (SCHEMAS_DIR / event_type).glob("*.avsc"):
        match = VERSION_FILE.match(path.name)
        if match is not None:
            found[int(match.group(1))] = path
    return found


def schema_dirs() -> list[Path]:
    return sorted(p for p in SCHEMAS_DIR.iterdir() if p.is_dir())


def all_schema_files() -> list[Path]:
    return sorted(SCHEMAS_DIR.glob("*/*.avsc"))


def pascal_case(event_type: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type))


ENVELOPE_FIELD = load(SCHEMAS_DIR / "order.placed" / "v3.avsc")["fields"][0]
"""The reference definition of the envelope every newest schema file carries as its first field."""

ORDER_ONLY_ENVELOPE_FIELD = load(SCHEMAS_DIR / "order.placed" / "v2.avsc")["fields"][0]
"""The envelope of the versions written before saga types (its key was ``order_id``)."""


# --------------------------------------------------------------------------- model ⇄ schema


def collect_named(schema: Any, named: dict[str, Any]) -> None:
    """Index the named types defined in a parsed schema by full name."""
    if isinstance(schema, list):
        for branch in schema:
            collect_named(branch, named)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "enum", "fixed"):
            named[schema["name"]] = schema
        if kind == "record":
            for field in schema["fields"]:
                collect_named(field["type"], named)
        elif kind == "array":
            collect_named(schema["items"], named)
        elif kind == "map":
            collect_named(schema["values"], named)
        elif not isinstance(kind, str):
            collect_named(kind, named)


def resolve(avro: Any, named: dict[str, Any]) -> Any:
    if isinstance(avro, str) and avro not in PRIMITIVES:
        return named[avro]
    return avro


def kind_of(avro: Any) -> str:
    if isinstance(avro, list):
        return "union"
    if isinstance(avro, str):
        return avro
    return str(avro["type"])


def logical_of(avro: Any) -> str | None:
    return avro.get("logicalType") if isinstance(avro, dict) else None


def type_problems(annotation: Any, avro: Any, named: dict[str, Any], path: str) -> list[str]:
    """How the Avro type of a field disagrees with its Python annotation; empty if it does not."""
    avro = resolve(avro, named)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    kind, logical = kind_of(avro), logical_of(avro)

    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(rest) == len(args):
            return [f"{path}: only `X | None` unions are supported, not {annotation}"]
        if kind != "union" or len(avro) != 2 or avro[0] != "null":
            return [f"{path}: {annotation} needs the Avro union [null, T], found {avro}"]
        return type_problems(rest[0], avro[1], named, path)
    if kind == "union":
        return [f"{path}: Avro union {avro} but the annotation {annotation} is not optional"]

    if origin is Literal:
        if not all(isinstance(a, str) for a in args):
            return [f"{path}: only string literals are supported, not {annotation}"]
        expected: tuple[str, str | None] = ("string", None)
    elif origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            return [f"{path}: only tuple[X, ...] is supported, not {annotation}"]
        if kind != "array":
            return [f"{path}: {annotation} needs an Avro array, found {avro}"]
        return type_problems(args[0], avro["items"], named, f"{path}[]")
    elif annotation is bool:
        expected = ("boolean", None)
    elif annotation is int:
        if kind not in ("int", "long") or logical is not None:
            return [f"{path}: int needs Avro int or long, found {avro}"]
        return []
    elif annotation is str:
        expected = ("string", None)
    elif annotation is datetime:
        expected = ("long", "timestamp-millis")
    elif isclass(annotation) and issubclass(annotation, BaseModel):
        if kind != "record":
            return [f"{path}: {annotation.__name__} needs an Avro record, found {avro}"]
        if avro["name"].rsplit(".", 1)[-1] != annotation.__name__:
            return [f"{path}: record {avro['name']} should be named {annotation.__name__}"]
        return record_problems(annotation, avro, named, path)
    else:
        return [f"{path}: unsupported annotation {annotation}"]

    if (kind, logical) != expected:
        return [f"{path}: {annotation} needs Avro {expected}, found {avro}"]
    return []


def record_problems(
    model: type[BaseModel],
    record: dict[str, Any],
    named: dict[str, Any],
    path: str,
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """How a parsed Avro record disagrees with a pydantic model (fields, types, defaults)."""
    avro_fields = {f["name"]: f for f in record["fields"] if f["name"] not in skip}
    model_fields = model.model_fields
    problems: list[str] = []
    only_model = sorted(set(model_fields) - set(avro_fields))
    only_avro = sorted(set(avro_fields) - set(model_fields))
    if only_model or only_avro:
        problems.append(
            f"{path}: fields differ; only in the model {only_model}, only in the schema {only_avro}"
        )
    for name in sorted(set(avro_fields) & set(model_fields)):
        info, field = model_fields[name], avro_fields[name]
        field_path = f"{path}.{name}"
        problems += type_problems(info.annotation, field["type"], named, field_path)
        if info.is_required():
            if "default" in field:
                problems.append(f"{field_path}: the schema has a default, the model has none")
        elif "default" not in field:
            problems.append(f"{field_path}: the model has a default, the schema has none")
        elif to_jsonable_python(info.get_default()) != field["default"]:
            problems.append(
                f"{field_path}: default {info.get_default()!r} in the model, "
                f"{field['default']!r} in the schema"
            )
    return problems


def model_schema_problems(model: type[Event], raw: dict[str, Any]) -> list[str]:
    parsed = parse_schema(raw, _write_hint=False)
    assert isinstance(parsed, dict)
    named: dict[str, Any] = {}
    collect_named(parsed, named)
    return record_problems(model, parsed, named, model.event_type, skip=frozenset({"envelope"}))


# --------------------------------------------------------------------------- examples

from contracts.samples import EXAMPLES  # noqa: E402

MODELS = pytest.mark.parametrize("model", CATALOG.models, ids=list(CATALOG))


# --------------------------------------------------------------------------- the layout


def test_the_catalog_has_no_duplicates() -> None:
    assert len(CATALOG.models) == len(CATALOG)
    assert len({m.__name__ for m in CATALOG.models}) == len(CATALOG)


def test_every_schema_folder_has_a_model() -> None:
    orphans = [p.name for p in schema_dirs() if p.name not in CATALOG]
    assert orphans == [], f"schemas without a model in events.catalog: {orphans}"


@pytest.mark.parametrize("type_dir", schema_dirs(), ids=lambda p: p.name)
def test_schema_files_are_numbered_versions_from_one(type_dir: Path) -> None:
    names = sorted(p.name for p in type_dir.iterdir())
    assert all(VERSION_FILE.match(n) for n in names), names
    numbers = sorted(versions(type_dir.name))
    assert numbers == list(range(1, len(numbers) + 1)), f"{type_dir.name}: gaps in {numbers}"


@MODELS
def test_model_names_follow_the_event_type(model: type[Event]) -> None:
    assert model.__name__ == pascal_case(model.event_type)
    assert model.domain() in {
        "order",
        "inventory",
        "payment",
        "shipment",
        "crm",
        "email",
        "return",
        "pickup",
    }
    assert (model.__doc__ or "").strip(), "every model needs a docstring"


# --------------------------------------------------------------------------- model ⇄ newest schema


@MODELS
def test_model_matches_its_newest_schema(model: type[Event]) -> None:
    found = versions(model.event_type)
    assert found, f"no schemas/{model.event_type}/v<N>.avsc"
    assert model.schema_version == max(found), "schema_version must name the newest file"

    raw = load(found[max(found)])
    parse_schema(raw)  # raises if not valid Avro
    assert raw["type"] == "record"
    assert raw["name"] == model.__name__
    assert raw["namespace"] == f"io.choreo.events.{model.domain()}"
    assert raw["fields"][0] == ENVELOPE_FIELD, "the first field must be the shared envelope"
    assert [f["name"] for f in raw["fields"]].count("envelope") == 1
    assert model_schema_problems(model, raw) == []


@pytest.mark.parametrize("path", all_schema_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_schema_file_carries_the_envelope_and_docs(path: Path) -> None:
    raw = load(path)
    parse_schema(raw)
    assert raw["fields"][0] in (ENVELOPE_FIELD, ORDER_ONLY_ENVELOPE_FIELD)
    assert raw.get("doc"), "the record needs a doc"
    undocumented = [
        f["name"]
        for f in raw["fields"]
        if not f.get("doc") and not (isinstance(f["type"], dict) and f["type"].get("doc"))
    ]
    assert undocumented == [], "every top-level field (or the record it holds) needs a doc"


@pytest.mark.parametrize("type_dir", schema_dirs(), ids=lambda p: p.name)
def test_record_name_is_the_same_in_every_version(type_dir: Path) -> None:
    names = {(load(p)["namespace"], load(p)["name"]) for p in versions(type_dir.name).values()}
    assert len(names) == 1, names


def test_named_types_mean_the_same_in_every_file() -> None:
    """A nested record reused across events (Address, ReservedItem) keeps one definition."""

    def strip_docs(schema: Any) -> Any:
        if isinstance(schema, dict):
            return {k: strip_docs(v) for k, v in schema.items() if k != "doc"}
        if isinstance(schema, list):
            return [strip_docs(v) for v in schema]
        return schema

    seen: dict[str, tuple[Path, Any]] = {}
    for path in all_schema_files():
        named: dict[str, Any] = {}
        collect_named(parse_schema(load(path), _write_hint=False), named)
        for name, definition in named.items():
            if name == f"{load(path)['namespace']}.{load(path)['name']}":
                continue  # the top-level record evolves by versions
            if name == "io.choreo.envelope.Envelope":
                continue  # evolved once (saga types); both shapes are checked above
            first = seen.setdefault(name, (path, strip_docs(definition)))
            assert first[1] == strip_docs(definition), f"{name} differs in {first[0]} and {path}"
    assert {"io.choreo.events.order.Address", "io.choreo.events.inventory.ReservedItem"} <= set(
        seen
    )


def test_every_schema_file_has_a_distinct_fingerprint() -> None:
    """Fingerprints identify the writer schema on the wire; two files must never share one."""
    prints: dict[str, Path] = {}
    for path in all_schema_files():
        fp = fingerprint(to_parsing_canonical_form(load(path)), "CRC-64-AVRO")
        assert fp not in prints, f"{path} and {prints[fp]} have the same canonical form"
        prints[fp] = path


# --------------------------------------------------------------------------- round trip


def test_examples_cover_the_catalog() -> None:
    assert set(EXAMPLES) == set(CATALOG)
    for event_type, example in EXAMPLES.items():
        assert type(example) is CATALOG[event_type]


@MODELS
def test_avro_round_trip_is_lossless(model: type[Event]) -> None:
    example = EXAMPLES[model.event_type]
    message = Message.first(example, saga_type="order", saga_key="order-42", producer="test")
    record = {"envelope": message.envelope.model_dump(), **example.model_dump()}
    schema = parse_schema(load(versions(model.event_type)[model.schema_version]))
    validate(record, schema, strict=True)  # no field the schema lacks, none missing

    buffer = BytesIO()
    schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    decoded = schemaless_reader(buffer, schema, None)
    assert isinstance(decoded, dict)
    assert buffer.read() == b"", "the reader must consume exactly what the writer wrote"

    assert Envelope.model_validate(decoded.pop("envelope")) == message.envelope
    assert model.model_validate(decoded) == example


# --------------------------------------------------------------------------- the checker checks


class _Inner(BaseModel):
    n: int


class _Probe(BaseModel):
    name: str
    count: int = 0
    inner: _Inner
    tags: tuple[str, ...] = ()
    at: datetime | None = None
    kind: Literal["a", "b"] = Field(default="a")


def _probe_record(**overrides: Any) -> dict[str, Any]:
    fields = {
        "name": {"name": "name", "type": "string"},
        "count": {"name": "count", "type": "long", "default": 0},
        "inner": {
            "name": "inner",
            "type": {"type": "record", "name": "_Inner", "fields": [{"name": "n", "type": "int"}]},
        },
        "tags": {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        "at": {
            "name": "at",
            "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
            "default": None,
        },
        "kind": {"name": "kind", "type": "string", "default": "a"},
    }
    for name, field in overrides.items():
        if field is None:
            del fields[name]
        else:
            fields[name] = {"name": name, **field}
    return {"type": "record", "name": "Probe", "namespace": "t", "fields": list(fields.values())}


def _probe_problems(record: dict[str, Any]) -> list[str]:
    parsed = parse_schema(record, _write_hint=False)
    assert isinstance(parsed, dict)
    named: dict[str, Any] = {}
    collect_named(parsed, named)
    return record_problems(_Probe, parsed, named, "Probe")


def test_the_model_schema_comparison_accepts_a_match() -> None:
    assert _probe_problems(_probe_record()) == []


_RENAMED_INNER = {"type": "record", "name": "Other", "fields": [{"name": "n", "type": "int"}]}
_RETYPED_INNER = {"type": "record", "name": "_Inner", "fields": [{"name": "n", "type": "string"}]}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"name": None}, "fields differ", id="field-missing-in-schema"),
        pytest.param({"extra": {"type": "string"}}, "fields differ", id="field-missing-in-model"),
        pytest.param({"name": {"type": "int"}}, "Probe.name", id="str-as-int"),
        pytest.param({"count": {"type": "string", "default": "0"}}, "Probe.count", id="int-as-str"),
        pytest.param({"count": {"type": "long"}}, "the model has a default", id="no-avro-default"),
        pytest.param(
            {"count": {"type": "long", "default": 1}}, "default 0 in the", id="defaults-differ"
        ),
        pytest.param(
            {"name": {"type": "string", "default": "x"}},
            "the schema has a default",
            id="no-model-default",
        ),
        pytest.param(
            {"at": {"type": {"type": "long", "logicalType": "timestamp-millis"}}},
            "needs the Avro union",
            id="optional-not-union",
        ),
        pytest.param(
            {"at": {"type": ["null", "long"], "default": None}}, "Probe.at", id="plain-long-time"
        ),
        pytest.param(
            {"tags": {"type": {"type": "array", "items": "int"}, "default": []}},
            "Probe.tags[]",
            id="array-items",
        ),
        pytest.param({"inner": {"type": _RETYPED_INNER}}, "Probe.inner.n", id="nested-field"),
        pytest.param({"inner": {"type": _RENAMED_INNER}}, "named _Inner", id="nested-name"),
        pytest.param({"kind": {"type": "int", "default": 0}}, "Probe.kind", id="literal-as-int"),
    ],
)
def test_the_model_schema_comparison_reports_drift(
    overrides: dict[str, Any], expected: str
) -> None:
    problems = _probe_problems(_probe_record(**overrides))
    assert problems, "the drift went unnoticed"
    assert any(expected in p for p in problems), problems
