"""A saga's trace as the CLI prints it (`choreo orders trace`, `choreo sagas trace`): its id,
a link to Jaeger's UI and the span tree (service, operation, offset and duration, events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.tree import Tree

from choreo.cli.common import out, print_json
from events.settings import Settings

if TYPE_CHECKING:
    from projections.traces import OrderTrace, SpanNode


def show_trace(
    settings: Settings, found: OrderTrace, title: str, about: dict[str, Any], *, as_json: bool
) -> None:
    """Print ``found`` under ``title`` (``order ord-…``); ``about`` leads its JSON."""
    link = f"{settings.jaeger_query_url.rstrip('/')}/trace/{found.trace_id}"
    if as_json:
        print_json(
            {
                **about,
                "trace_id": found.trace_id,
                "link": link,
                "services": sorted(found.services),
                "spans": [s.to_json() for s in found.spans],
                "other_traces": found.other_traces,
            }
        )
        return
    out.print(f"trace [bold]{found.trace_id}[/] ({len(found.spans)} spans) {link}")
    origin = found.spans[0].start_us if found.spans else 0

    def add(tree: Tree, node: SpanNode) -> None:
        offset = (node.start_us - origin) / 1000
        label = (
            f"[cyan]{node.service}[/] {node.name} "
            f"[dim]+{offset:.1f} ms, {node.duration_us / 1000:.1f} ms[/]"
        )
        if node.events:
            label += f" [yellow]{', '.join(node.events)}[/]"
        branch = tree.add(label)
        for child in node.children:
            add(branch, child)

    root = Tree(title)
    for node in found.roots:
        add(root, node)
    out.print(root)
    if found.other_traces:
        out.print(f"also in other traces: {', '.join(found.other_traces)}")
