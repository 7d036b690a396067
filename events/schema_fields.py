"""An event schema's fields as a reader wants them: one line per field, nested ones by path.

What `choreo schemas show` prints, the console's definitions page lists for a saga's start
event, and a user writes the JSON of an event from (`choreo sagas start --file`): the fields
after the shared envelope, which the runtime fills in, with readable types (``array of
LineItem``, ``timestamp (ms)``, ``string or null``), whether a writer must give them, their
defaults and the schema's own docs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

_LOGICAL = {
    "timestamp-millis": "timestamp (ms)",
    "timestamp-micros": "timestamp (µs)",
    "local-timestamp-millis": "local timestamp (ms)",
    "local-timestamp-micros": "local timestamp (µs)",
    "date": "date",
    "time-millis": "time of day (ms)",
    "time-micros": "time of day (µs)",
    "uuid": "uuid",
}
ENVELOPE = "envelope"
"""The first field of every Choreo event schema: metadata the runtime writes."""


@dataclass(frozen=True)
class SchemaField:
    """One field, nested ones named by their path (``items[].sku``, ``address.city``)."""

    name: str
    type: str
    required: bool
    default: Any
    doc: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def payload_fields(schema: dict[str, Any]) -> list[SchemaField]:
    """The fields of an event schema (a record), without its envelope, nested ones after
    their parent."""
    return list(_fields(schema["fields"], "", {}, skip={ENVELOPE}))


def type_name(avro_type: Any) -> str:
    """A readable name for an Avro type: ``string``, ``long``, ``string or null``,
    ``array of LineItem``, ``map of long``, ``enum (A | B)``, ``decimal(10, 2)``, a record's
    name."""
    if isinstance(avro_type, str):
        return avro_type
    if isinstance(avro_type, list):
        return " or ".join(type_name(t) for t in _null_last(avro_type))
    kind = avro_type["type"]
    logical = avro_type.get("logicalType")
    if logical == "decimal":
        return f"decimal({avro_type.get('precision')}, {avro_type.get('scale', 0)})"
    if logical in _LOGICAL:
        return _LOGICAL[logical]
    if kind == "array":
        return f"array of {type_name(avro_type['items'])}"
    if kind == "map":
        return f"map of {type_name(avro_type['values'])}"
    if kind == "enum":
        return f"enum ({' | '.join(avro_type['symbols'])})"
    if kind in ("record", "fixed", "error"):
        return str(avro_type["name"])
    return type_name(kind)


def _fields(
    fields: list[dict[str, Any]], prefix: str, named: dict[str, Any], skip: set[str]
) -> Iterator[SchemaField]:
    for field in fields:
        if field["name"] in skip:
            continue
        name = f"{prefix}{field['name']}"
        avro_type = field["type"]
        yield SchemaField(
            name=name,
            type=type_name(avro_type),
            required="default" not in field,
            default=field.get("default"),
            doc=field.get("doc", ""),
        )
        yield from _nested(avro_type, name, named)


def _nested(avro_type: Any, name: str, named: dict[str, Any]) -> Iterator[SchemaField]:
    """The fields inside a record type (or an array's, a map's or a union's records), each
    record's once: a later reference by name is only named."""
    if isinstance(avro_type, list):
        for branch in avro_type:
            yield from _nested(branch, name, named)
    elif isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "array":
            yield from _nested(avro_type["items"], f"{name}[]", named)
        elif kind == "map":
            yield from _nested(avro_type["values"], f"{name}{{}}", named)
        elif kind in ("record", "error") and avro_type["name"] not in named:
            named[avro_type["name"]] = avro_type
            yield from _fields(avro_type["fields"], f"{name}.", named, skip=set())


def _null_last(union: list[Any]) -> list[Any]:
    return sorted(union, key=lambda t: t == "null")
