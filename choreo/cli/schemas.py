"""`choreo schemas`: the Avro schemas in schemas/, their versions and fingerprints, and one
event's fields with an example of its JSON."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Column, Table
from rich.text import Text

from choreo.cli.common import (
    JsonFlag,
    command_group,
    fail,
    out,
    print_json,
    readable,
    stacked,
)
from events.errors import ChoreoError
from events.schema_fields import payload_fields
from events.schemas import SchemaRegistry, SchemaVersion
from events.settings import get_settings

app = command_group("Inspect the Avro schemas in schemas/.")


@app.command("list")
def schemas_list(as_json: JsonFlag = False) -> None:
    """Every event type with its schema versions and their single-object fingerprints."""
    registry = SchemaRegistry.load(get_settings().schemas_dir)
    rows = [
        {
            "event_type": sv.event_type,
            "version": sv.version,
            "fingerprint": sv.fingerprint_hex,
            "path": str(sv.path.relative_to(get_settings().schemas_dir.parent)),
        }
        for event_type in registry.event_types
        for sv in registry.versions(event_type)
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(
        Column("event type", overflow="fold"),
        "version",
        "fingerprint (CRC-64-AVRO, LE)",
        Column("file", overflow="fold"),
    )
    for r in rows:
        table.add_row(
            str(r["event_type"]), str(r["version"]), str(r["fingerprint"]), str(r["path"])
        )
    out.print(readable(table, "fingerprint (CRC-64-AVRO, LE)"))


@app.command("show")
def schemas_show(
    event_type: Annotated[str, typer.Argument(help="The event type, e.g. `return.requested`.")],
    version: Annotated[
        int | None, typer.Option(min=1, help="This version (default: the newest).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """One event's fields: type, whether a writer must give it, its default and what it
    means, nested fields by their path (`items[].sku`); then an example of the event as
    JSON, the form `choreo sagas start --file` reads for a saga's start event.

    The envelope every message carries (`event_id`, `saga_key`, `occurred_at`, ...) is left
    out: the runtime writes it. Timestamps are ISO 8601 strings in JSON.
    """
    schema = _schema(event_type, version)
    example = example_of(event_type) if schema.version == _newest(event_type) else None
    fields = payload_fields(schema.raw)
    if as_json:
        print_json(
            {
                "event_type": event_type,
                "version": schema.version,
                "versions": [v.version for v in _registry().versions(event_type)],
                "path": _relative(schema),
                "fingerprint": schema.fingerprint_hex,
                "doc": schema.raw.get("doc", ""),
                "fields": [f.to_json() for f in fields],
                "example": example,
            }
        )
        return
    versions = ", ".join(str(v.version) for v in _registry().versions(event_type))
    title = (f"{event_type} v{schema.version}", "bold")
    out.print(Text.assemble(title, f" (versions {versions}): {schema.raw.get('doc', '')}"))
    out.print(f"[dim]{_relative(schema)}[/]")
    # Two columns, the type under the name, so that the docs keep a readable width at 80.
    table = Table("field", Column("about", overflow="fold"))
    for f in fields:
        about = f.doc
        if not f.required:
            default = orjson.dumps(f.default).decode()
            about = f"{about} [dim]Optional, default {default}.[/]".strip()
        table.add_row(stacked(f.name, f.type), about)
    out.print(readable(table, "field"))
    if example is not None:
        out.print("Example:")
        out.print_json(orjson.dumps(example).decode())


def example_of(event_type: str) -> dict[str, Any] | None:
    """The catalog's sample of ``event_type`` as JSON (its fields without the envelope), or
    None when the catalog has no sample of it."""
    from contracts.samples import EXAMPLES

    sample = EXAMPLES.get(event_type)
    return None if sample is None else sample.model_dump(mode="json")


def _registry() -> SchemaRegistry:
    return SchemaRegistry.load(get_settings().schemas_dir)


def _schema(event_type: str, version: int | None) -> SchemaVersion:
    registry = _registry()
    try:
        return registry.latest(event_type) if version is None else registry.get(event_type, version)
    except ChoreoError as exc:
        fail(ChoreoError(f"{exc}; `choreo schemas list` lists them"))


def _newest(event_type: str) -> int:
    return _registry().latest(event_type).version


def _relative(schema: SchemaVersion) -> str:
    return str(schema.path.relative_to(get_settings().schemas_dir.parent))
