"""`choreo metrics`: Choreo's metrics as the collector (Jaeger) serves them."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from choreo.cli.common import JsonFlag, fail, out, print_json, readable
from events.errors import ChoreoError
from events.settings import get_settings

# Labels every sample carries that say nothing about Choreo.
NOISE_LABELS = {"job", "instance", "service_instance_id"}
SAMPLE = re.compile(r"^(choreo_[a-z_]+)(?:\{(.*)\})? ([0-9.eE+-]+|NaN)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metrics_cmd(
    match: Annotated[str, typer.Option(help="Only metrics whose name contains this.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Choreo's metrics as the collector (Jaeger) serves them: events by outcome, handler
    latency, saga durations, compensations, dead letters, consumer lag."""
    # httpx: imported here to keep `choreo --help` quick (see choreo.cli.common).
    import httpx

    url = get_settings().metrics_url
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError as exc:
        fail(ChoreoError(f"cannot read metrics at {url}: {exc}"))
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if found is None or found.group(1).endswith("_bucket") or match not in found.group(1):
            continue
        labels = {
            k: v
            for k, v in LABEL.findall(found.group(2) or "")
            if not k.startswith(("otel_", "telemetry_")) and k not in NOISE_LABELS
        }
        rows.append({"name": found.group(1), "labels": labels, "value": float(found.group(3))})
    if as_json:
        print_json(rows)
        return
    # The labels a line each, folded when one is longer than its column: never cut.
    table = Table(Column("metric", overflow="fold"), Column("labels", overflow="fold"), "value")
    for r in sorted(rows, key=lambda r: (r["name"], str(r["labels"]))):
        labels_text = "\n".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        table.add_row(str(r["name"]), labels_text, f"{r['value']:g}")
    out.print(readable(table, "value"))
