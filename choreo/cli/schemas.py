"""`choreo schemas`: the Avro schemas in schemas/, their versions and fingerprints."""

from __future__ import annotations

from rich.table import Column, Table

from choreo.cli.common import JsonFlag, command_group, out, print_json, readable
from events.schemas import SchemaRegistry
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
