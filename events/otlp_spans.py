"""The trace exporter: OTLP over gRPC as the SDK's, with each span's protobuf written directly.

The SDK's encoder builds a protobuf message object for every span, attribute and value,
through a few Python calls each: 23 to 28 µs of the export thread's CPU a span, about as
much as starting and ending the span, and Choreo records ~43 spans an order. Writing the
wire bytes of a span directly (each attribute key's bytes made once) takes a fraction of
that; protobuf's C parser then reads the request once, and the SDK's exporter sends it as
before (its channel, retries, headers and compression untouched).
``tests/unit/events/test_otlp_spans.py`` holds the result equal to the SDK's encoding for
every kind of span Choreo records, and for every attribute type the SDK allows.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

_logger = logging.getLogger(__name__)

_FIXED64 = struct.Struct("<Q").pack
_TIMES = struct.Struct("<BQBQ").pack  # start_time_unix_nano = 7, end_time_unix_nano = 8
_DOUBLE = struct.Struct("<d").pack
_INT64 = (1 << 64) - 1
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


class ChoreoSpanExporter(OTLPSpanExporter):
    """:class:`OTLPSpanExporter` whose request is built by :func:`encode_request`."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(encode_request(data))


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The wire bytes of the ``ExportTraceServiceRequest`` carrying ``spans``, grouped by
    resource and instrumentation scope as the SDK's encoder groups them."""
    # Grouped by the first equal resource and scope seen, looked for once per object and then
    # keyed by identity: a resource's own hash serialises its attributes each time.
    first: dict[int, Any] = {}
    grouped: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, Spans]]]]
    grouped = {}
    for span in spans:
        resource = _first_equal(span.resource, first)
        scope = _first_equal(span.instrumentation_scope or None, first)
        scopes = grouped.setdefault(id(resource), (resource, {}))[1]
        scopes.setdefault(id(scope), (scope, []))[1].append(encode_span(span))
    request = bytearray()
    for resource, scopes in grouped.values():
        resource_spans = bytearray(_resource_bytes(resource))
        for scope, encoded in scopes.values():
            scope_spans = bytearray(_scope_bytes(scope))
            for span_bytes in encoded:
                scope_spans += _field(b"\x12", span_bytes)  # ScopeSpans.spans = 2
            if scope is not None and scope.schema_url:
                scope_spans += _field(b"\x1a", scope.schema_url.encode())
            resource_spans += _field(b"\x12", scope_spans)  # ResourceSpans.scope_spans = 2
        if resource.schema_url:
            resource_spans += _field(b"\x1a", resource.schema_url.encode())
        request += _field(b"\x0a", resource_spans)  # ExportTraceServiceRequest.resource_spans
    return bytes(request)


Spans = list[bytes]
_MISSING = object()


def _first_equal(thing: Any, first: dict[int, Any]) -> Any:
    """``thing``, or the first object equal to it seen before (``first``: by id)."""
    found = first.get(id(thing), _MISSING)
    if found is _MISSING:
        found = first[id(thing)] = next((o for o in first.values() if o == thing), thing)
    return found


def encode_span(span: ReadableSpan) -> bytes:
    """One ``Span`` message's bytes (the fields of opentelemetry/proto/trace/v1/trace.proto)."""
    context = span.context
    parent = span.parent
    out = bytearray(b"\x0a\x10")  # trace_id = 1
    out += context.trace_id.to_bytes(16, "big")
    out += b"\x12\x08"  # span_id = 2
    out += context.span_id.to_bytes(8, "big")
    if context.trace_state:
        out += _field(b"\x1a", _trace_state(context).encode())  # trace_state = 3
    if parent is not None:
        out += b"\x22\x08"  # parent_span_id = 4
        out += parent.span_id.to_bytes(8, "big")
    out += _name(span.name)  # name = 5
    out += _KINDS[span.kind.value]  # kind = 6 (the SDK's kind + 1)
    out += _TIMES(0x39, span.start_time or 0, 0x41, span.end_time or 0)
    _attributes(out, b"\x4a", span._attributes)  # attributes = 9 (not the copying property)
    if span.dropped_attributes:
        out += b"\x50" + _varint(span.dropped_attributes)
    for event in span._events or ():  # events = 11
        encoded = bytearray(b"\x09")  # time_unix_nano = 1, fixed64
        encoded += _FIXED64(event.timestamp)
        encoded += _field(b"\x12", event.name.encode())
        _attributes(encoded, b"\x1a", event.attributes)
        if event.dropped_attributes:
            encoded += b"\x20" + _varint(event.dropped_attributes)
        out += _field(b"\x5a", encoded)
    if span.dropped_events:
        out += b"\x60" + _varint(span.dropped_events)
    for link in span._links or ():  # links = 13
        encoded = bytearray(b"\x0a\x10")
        encoded += link.context.trace_id.to_bytes(16, "big")
        encoded += b"\x12\x08"
        encoded += link.context.span_id.to_bytes(8, "big")
        _attributes(encoded, b"\x22", link.attributes)
        if link.dropped_attributes:
            encoded += b"\x28" + _varint(link.dropped_attributes)
        encoded += b"\x35" + _flags(link.context)  # flags = 6, fixed32
        out += _field(b"\x6a", encoded)
    if span.dropped_links:
        out += b"\x70" + _varint(span.dropped_links)
    status = bytearray()  # status = 15, always present (UNSET is code 0)
    if span.status.description:
        status += _field(b"\x12", span.status.description.encode())
    if span.status.status_code.value:
        status += b"\x18" + _varint(span.status.status_code.value)
    out += _field(b"\x7a", status)
    out += b"\x85\x01" + _flags(parent)  # flags = 16, fixed32
    return bytes(out)


_KINDS = [b"\x30" + bytes([kind + 1]) for kind in range(5)]


def _flags(parent: SpanContext | None) -> bytes:
    flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
    return flags.to_bytes(4, "little")


def _trace_state(context: SpanContext) -> str:
    return ",".join(f"{key}={value}" for key, value in context.trace_state.items())


def _attributes(out: bytearray, tag: bytes, attributes: Any) -> None:
    """Append each attribute as a ``KeyValue`` field ``tag``; one the SDK could not have
    accepted is left out and logged, as the SDK's encoder does."""
    if not attributes:
        return
    # BoundedAttributes keeps a plain dict; its own items() looks each key up again.
    for key, value in getattr(attributes, "_dict", attributes).items():
        if type(value) is str:
            out += _string_attribute(tag, key, value)
            continue
        try:
            out += _key_value(tag, key, value)
        except TypeError:
            _logger.exception("Failed to encode key %s", key)


def _key_value(tag: bytes, key: str, value: Any) -> bytes:
    """A ``KeyValue`` as field ``tag``: its key (field 1) and its ``AnyValue`` (field 2)."""
    return _field(tag, _key(key) + _field(b"\x12", _any_value(value)))


# String attributes' fields, cached: most of a span's attributes repeat from span to span
# (``messaging.system``, the topic, the group, the event type, the handler).
_string_attribute = lru_cache(maxsize=4096)(_key_value)


@lru_cache(maxsize=1024)
def _key(key: str) -> bytes:
    return _field(b"\x0a", key.encode())  # KeyValue.key = 1


@lru_cache(maxsize=1024)
def _name(name: str) -> bytes:
    return _field(b"\x2a", name.encode())


def _any_value(value: Any) -> bytes:
    """An ``AnyValue``: the oneof's field is written even at its zero value, as protobuf does
    for a set oneof."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & _INT64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if value is None:
        return b""
    if isinstance(value, Sequence):
        values = b"".join(_field(b"\x0a", _any_value(v)) for v in value)
        return _field(b"\x2a", values)  # array_value = 5: ArrayValue.values = 1
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _field(tag: bytes, payload: bytes | bytearray) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes([n]) for n in range(0x80)]


@cache
def _resource_bytes(resource: Resource) -> bytes:
    """``ResourceSpans.resource`` (field 1), by the SDK's encoder: made once a process."""
    return _field(b"\x0a", _encode_resource(resource).SerializeToString())


@cache
def _scope_bytes(scope: InstrumentationScope | None) -> bytes:
    """``ScopeSpans.scope`` (field 1), by the SDK's encoder: made once a scope."""
    if scope is None:
        return b"\x0a\x00"  # present, empty
    return _field(b"\x0a", _encode_instrumentation_scope(scope).SerializeToString())
