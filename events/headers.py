"""Kafka headers of a Choreo message: the envelope in plain text plus W3C trace context.

The value's Avro envelope is authoritative; the headers repeat it so that tools (kcat, the
console consumer) and consumers can route or filter without decoding the value.
"""

from __future__ import annotations

from collections.abc import Iterable

from events import tracing
from events.codec import CONTENT_TYPE
from events.model import Envelope

EVENT_TYPE = "event_type"


def envelope_headers(envelope: Envelope) -> tracing.Headers:
    """Headers for a message with ``envelope``, with the current trace context."""
    headers: tracing.Headers = [
        ("event_id", str(envelope.event_id).encode()),
        (EVENT_TYPE, envelope.event_type.encode()),
        ("saga_type", envelope.saga_type.encode()),
        ("saga_key", envelope.saga_key.encode()),
        ("correlation_id", envelope.correlation_id.encode()),
        ("occurred_at", envelope.occurred_at.isoformat().encode()),
        ("producer", envelope.producer.encode()),
        ("schema_version", str(envelope.schema_version).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if envelope.causation_id is not None:
        headers.append(("causation_id", envelope.causation_id.encode()))
    tracing.inject(headers)
    return headers


def header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    """The first value of header ``name`` as text, or None."""
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace")
    return None
