"""Avro schema compatibility: can a reader holding one schema decode data written with another?

Choreo evolves an event by adding ``schemas/<event_type>/v<N+1>.avsc``. Consumers upgrade at their
own pace and replays read years-old records, so every new version must be BACKWARD compatible
with every older one: data written with an old schema must decode with the new one as the reader.

:func:`backward_problems` checks that statically, by the resolution rules of the Avro
specification (section "Schema Resolution"):

* a record resolves against a record of the same full name (or one the reader lists among its
  ``aliases``); reader fields are matched to writer fields by name (or reader field alias);
  writer fields the reader lacks are skipped; a reader field the writer lacks needs a
  ``default``, and that default must be a valid value of the field's type (for a union: of its
  first branch);
* primitives must be equal or a legal promotion: int→long→float→double, string↔bytes;
* a writer union resolves only if every one of its branches resolves against the reader; a
  writer non-union against a reader union resolves against the first reader branch that matches;
* enums: every writer symbol is a reader symbol, or the reader enum has a ``default``;
  fixed: same name and size; arrays and maps: their items / values, recursively.

One deliberate rule is stricter than the specification: a ``logicalType`` may not change (e.g.
``timestamp-millis`` to ``timestamp-micros``), since that decodes without error into wrong
values.

:func:`forward_problems` is the mirror image (old readers can decode new data); a pair that
passes both is FULL compatible. The ``choreo`` CLI reuses these checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
"""Writer primitive → reader primitives it may be read as."""

_NAMED = frozenset({"record", "error", "enum", "fixed"})
_SHAPES = PRIMITIVES | _NAMED | {"array", "map"}


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the reader cannot decode what the writer wrote."""

    path: str
    """Where in the schema, e.g. ``OrderPlaced.items[].quantity``."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def backward_problems(writer: Any, reader: Any) -> list[Problem]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty if it can.

    Both schemas may be raw JSON (as loaded from an ``.avsc`` file) or ``fastavro``-parsed.
    For BACKWARD compatibility of a new version pass the old schema as ``writer``. A schema
    that is not valid Avro raises fastavro's ``SchemaParseException``: that is no verdict on
    compatibility.
    """
    return _Checker(writer, reader).run()


def forward_problems(old: Any, new: Any) -> list[Problem]:
    """Why readers holding ``old`` cannot read data written with ``new``; empty if they can."""
    return backward_problems(new, old)


def is_backward_compatible(writer: Any, reader: Any) -> bool:
    """Whether data written with ``writer`` can always be read with ``reader``."""
    return not backward_problems(writer, reader)


def _parse(schema: Any) -> Any:
    """Full names everywhere, named types defined once and referenced by full name after."""
    return parse_schema(schema, _write_hint=False, _force=True)


def _collect(schema: Any, named: dict[str, dict[str, Any]]) -> None:
    """Index every named type defined in ``schema`` by its full name."""
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, named)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED:
            named[schema["name"]] = schema
        if kind in ("record", "error"):
            for field in schema["fields"]:
                _collect(field["type"], named)
        elif kind == "array":
            _collect(schema["items"], named)
        elif kind == "map":
            _collect(schema["values"], named)
        elif isinstance(kind, (dict, list)):
            _collect(kind, named)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _qualify(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


class _Checker:
    def __init__(self, writer: Any, reader: Any) -> None:
        self.writer = _parse(writer)
        self.reader = _parse(reader)
        self.w_named: dict[str, dict[str, Any]] = {}
        self.r_named: dict[str, dict[str, Any]] = {}
        _collect(self.writer, self.w_named)
        _collect(self.reader, self.r_named)
        self.problems: list[Problem] = []
        self.in_progress: set[tuple[str, str]] = set()

    def run(self) -> list[Problem]:
        root = self.reader.get("name") if isinstance(self.reader, dict) else None
        self.check(self.writer, self.reader, _short(root) if isinstance(root, str) else "$")
        return self.problems

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # -- schema shapes ---------------------------------------------------------------------

    @staticmethod
    def resolve(schema: Any, named: Mapping[str, Any]) -> Any:
        """Replace a named reference by its definition; unwrap ``{"type": <non-primitive>}``."""
        while True:
            if isinstance(schema, str) and schema not in PRIMITIVES:
                schema = named[schema]
            elif isinstance(schema, dict) and (
                not isinstance(schema.get("type"), str) or schema["type"] not in _SHAPES
            ):
                schema = schema["type"]
            else:
                return schema

    @staticmethod
    def kind(schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            return schema
        kind = schema["type"]
        return "record" if kind == "error" else str(kind)

    @staticmethod
    def logical(schema: Any) -> str | None:
        return schema.get("logicalType") if isinstance(schema, dict) else None

    @staticmethod
    def describe(schema: Any) -> str:
        kind = _Checker.kind(schema)
        if kind in _NAMED:
            return f"{kind} {schema['name']}"
        logical = _Checker.logical(schema)
        return f"{kind} ({logical})" if logical else kind

    def names_match(self, writer: Mapping[str, Any], reader: Mapping[str, Any]) -> bool:
        if writer["name"] == reader["name"]:
            return True
        namespace = reader["name"].rpartition(".")[0]
        aliases = {_qualify(a, namespace) for a in reader.get("aliases", ())}
        return writer["name"] in aliases

    def matches(self, writer: Any, reader: Any) -> bool:
        """The first-match test of union resolution: same kind (and name), or a promotion."""
        w_kind, r_kind = self.kind(writer), self.kind(reader)
        if w_kind in PRIMITIVES and r_kind in PRIMITIVES:
            return w_kind == r_kind or r_kind in PROMOTIONS.get(w_kind, ())
        if w_kind != r_kind:
            return False
        if w_kind in _NAMED:
            return self.names_match(writer, reader)
        return True

    # -- resolution ------------------------------------------------------------------------

    def check(self, writer: Any, reader: Any, path: str) -> None:
        writer = self.resolve(writer, self.w_named)
        reader = self.resolve(reader, self.r_named)

        if isinstance(writer, list):
            for branch in writer:
                branch = self.resolve(branch, self.w_named)
                self.check_against(branch, reader, f"{path}<{self.describe(branch)}>")
            return
        self.check_against(writer, reader, path)

    def check_against(self, writer: Any, reader: Any, path: str) -> None:
        """Resolve a non-union writer schema against the reader."""
        if isinstance(reader, list):
            for branch in reader:
                branch = self.resolve(branch, self.r_named)
                if self.matches(writer, branch):
                    self.check_against(writer, branch, path)
                    return
            self.fail(
                path, f"the reader union has no branch for the writer's {self.describe(writer)}"
            )
            return

        w_kind, r_kind = self.kind(writer), self.kind(reader)
        if w_kind in PRIMITIVES or r_kind in PRIMITIVES:
            if not self.matches(writer, reader):
                self.fail(
                    path,
                    f"the writer's {self.describe(writer)} cannot be read "
                    f"as {self.describe(reader)}",
                )
            elif self.logical(writer) != self.logical(reader):
                self.fail(
                    path,
                    f"logical type changed from {self.logical(writer)} to {self.logical(reader)}",
                )
            return
        if w_kind != r_kind:
            self.fail(path, f"the writer's {w_kind} cannot be read as {r_kind}")
            return
        if w_kind in _NAMED and not self.names_match(writer, reader):
            self.fail(path, f"{w_kind} name changed from {writer['name']} to {reader['name']}")
            return

        if w_kind == "record":
            self.check_record(writer, reader, path)
        elif w_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                self.fail(path, f"enum symbols {missing} unknown to the reader (no enum default)")
        elif w_kind == "fixed":
            if writer["size"] != reader["size"]:
                self.fail(path, f"fixed size changed from {writer['size']} to {reader['size']}")
        elif w_kind == "array":
            self.check(writer["items"], reader["items"], f"{path}[]")
        elif w_kind == "map":
            self.check(writer["values"], reader["values"], f"{path}{{}}")

    def check_record(self, writer: Mapping[str, Any], reader: Mapping[str, Any], path: str) -> None:
        key = (writer["name"], reader["name"])
        if key in self.in_progress:  # a recursive type: already being checked further up
            return
        self.in_progress.add(key)
        try:
            writer_fields = {f["name"]: f for f in writer["fields"]}
            for field in reader["fields"]:
                field_path = f"{path}.{field['name']}"
                names = [field["name"], *field.get("aliases", ())]
                source = next((writer_fields[n] for n in names if n in writer_fields), None)
                if source is not None:
                    self.check(source["type"], field["type"], field_path)
                elif "default" not in field:
                    self.fail(field_path, "added without a default; old data has no value for it")
                elif not self.default_fits(field["default"], field["type"]):
                    self.fail(field_path, self.bad_default(field["default"], field["type"]))
        finally:
            self.in_progress.discard(key)

    def bad_default(self, value: Any, schema: Any) -> str:
        schema = self.resolve(schema, self.r_named)
        if isinstance(schema, list) and schema:
            first = self.describe(self.resolve(schema[0], self.r_named))
            return f"default {value!r} is not a valid {first}, the first branch of the union"
        return f"default {value!r} is not a valid {self.describe(schema)}"

    def default_fits(self, value: Any, schema: Any) -> bool:
        """Whether ``value`` (JSON) is a valid default for ``schema`` (a reader schema)."""
        schema = self.resolve(schema, self.r_named)
        if isinstance(schema, list):  # a union's default belongs to its first branch
            return bool(schema) and self.default_fits(value, schema[0])
        kind = self.kind(schema)
        if kind == "null":
            return value is None
        if kind == "boolean":
            return isinstance(value, bool)
        if kind in ("int", "long"):
            return isinstance(value, int) and not isinstance(value, bool)
        if kind in ("float", "double"):
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind in ("string", "bytes", "fixed"):
            return isinstance(value, str)
        if kind == "enum":
            return value in schema["symbols"]
        if kind == "array":
            return isinstance(value, list) and all(
                self.default_fits(v, schema["items"]) for v in value
            )
        if kind == "map":
            return isinstance(value, dict) and all(
                self.default_fits(v, schema["values"]) for v in value.values()
            )
        if kind == "record":
            if not isinstance(value, dict):
                return False
            return all(
                self.default_fits(value[f["name"]], f["type"])
                if f["name"] in value
                else "default" in f
                for f in schema["fields"]
            )
        return False
