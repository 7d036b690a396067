"""A saga's trace, fetched from Jaeger's query API and arranged as a span tree.

`choreo orders trace` finds an order's trace by its tag (:func:`fetch_order_trace`); the
console knows a saga's trace id from the ``traceparent`` its start event was logged with and
loads it directly (:func:`fetch_trace`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from events.errors import ChoreoError
from events.settings import Settings

# Services that take part in every order's flow; any of them finds the trace by its tag.
SEARCH_SERVICES = ("saga-coordinator", "inventory", "cli")


@dataclass
class SpanNode:
    """One span of the trace, with its children in start order."""

    span_id: str
    parent_id: str | None
    service: str
    name: str
    start_us: int
    duration_us: int
    attributes: dict[str, Any]
    events: list[str] = field(default_factory=list)
    children: list[SpanNode] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "service": self.service,
            "name": self.name,
            "start_us": self.start_us,
            "duration_us": self.duration_us,
            "attributes": self.attributes,
            "events": self.events,
        }


@dataclass
class OrderTrace:
    """The trace of one order: its id, every span, and the roots of the tree."""

    trace_id: str
    spans: list[SpanNode]
    roots: list[SpanNode]
    other_traces: list[str]

    @property
    def services(self) -> set[str]:
        return {s.service for s in self.spans}


async def fetch_order_trace(settings: Settings, order_id: str) -> OrderTrace:
    """Find the trace tagged ``choreo.order_id=order_id`` and load all of its spans."""
    base = settings.jaeger_query_url.rstrip("/")
    tags = orjson.dumps({"choreo.order_id": order_id}).decode()
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        trace_ids: list[str] = []
        try:
            for service in SEARCH_SERVICES:
                response = await http.get(
                    "/api/traces",
                    params={"service": service, "tags": tags, "lookback": "2d", "limit": 20},
                )
                response.raise_for_status()
                trace_ids = [t["traceID"] for t in response.json().get("data") or []]
                if trace_ids:
                    break
            if not trace_ids:
                raise ChoreoError(f"no trace of order {order_id} in Jaeger at {base}")
            # The trace with the most spans is the order's main flow.
            traces: list[dict[str, Any]] = []
            for trace_id in dict.fromkeys(trace_ids):
                response = await http.get(f"/api/traces/{trace_id}")
                response.raise_for_status()
                traces.extend(response.json().get("data") or [])
        except httpx.HTTPError as exc:
            raise ChoreoError(f"cannot query Jaeger at {base}: {exc}") from exc
    traces.sort(key=lambda t: len(t["spans"]), reverse=True)
    main = traces[0]
    return build_tree(main, [t["traceID"] for t in traces[1:]])


async def fetch_trace(settings: Settings, trace_id: str, timeout: float = 3.0) -> OrderTrace | None:  # noqa: ASYNC109
    """The trace ``trace_id`` from Jaeger's query API; ``None`` if Jaeger has no such trace.

    Raises:
        ChoreoError: Jaeger cannot be reached or answers with an error.
    """
    base = settings.jaeger_query_url.rstrip("/")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as http:
            response = await http.get(f"/api/traces/{trace_id}")
            if response.status_code == 404:
                return None
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ChoreoError(f"cannot query Jaeger at {base}: {exc}") from exc
    found = [t for t in response.json().get("data") or [] if t.get("spans")]
    return build_tree(found[0], []) if found else None


def build_tree(data: dict[str, Any], other_traces: list[str]) -> OrderTrace:
    """Arrange the spans of one Jaeger trace (API JSON) as a tree."""
    processes = data.get("processes") or {}
    nodes: dict[str, SpanNode] = {}
    for span in data["spans"]:
        parent = next(
            (r["spanID"] for r in span.get("references") or [] if r.get("refType") == "CHILD_OF"),
            None,
        )
        nodes[span["spanID"]] = SpanNode(
            span_id=span["spanID"],
            parent_id=parent,
            service=processes.get(span.get("processID"), {}).get("serviceName", "?"),
            name=span["operationName"],
            start_us=span["startTime"],
            duration_us=span["duration"],
            attributes={t["key"]: t["value"] for t in span.get("tags") or []},
            events=[
                str(f.get("value"))
                for log in span.get("logs") or []
                for f in log.get("fields") or []
                if f.get("key") == "event"
            ],
        )
    roots: list[SpanNode] = []
    for node in sorted(nodes.values(), key=lambda n: n.start_us):
        parent = nodes.get(node.parent_id) if node.parent_id else None
        (parent.children if parent is not None else roots).append(node)
    spans = sorted(nodes.values(), key=lambda n: n.start_us)
    return OrderTrace(data["traceID"], spans, roots, other_traces)
