"""Hypothesis strategies for Choreo's wire format: valid messages, and values that are not.

- :func:`valid_messages`: the catalog's example events in generated envelopes.
- :func:`schema_valid_frames`: single-object frames whose body is valid Avro for the schema the
  fingerprint names, with arbitrary field values (each subtree is either the example's or
  arbitrary), so most break a rule of the model and some break none.
- :func:`malformed_values`: arbitrary bytes, truncated frames, bit flips, and frames carrying
  another schema's fingerprint.

Shared by the codec's fuzz tests (tests/unit/events/test_codec_fuzz.py) and the dead-letter
fuzz test on the real stack (tests/integration/test_dlq_fuzz.py).
"""

from __future__ import annotations

import functools
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from fastavro import schemaless_writer
from hypothesis import strategies as st

from contracts.samples import EXAMPLES, T0
from events.codec import HEADER_SIZE, MAGIC, Codec
from events.errors import ContractError
from events.model import Envelope, Event, Message
from events.schemas import SchemaRegistry, SchemaVersion

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
# Arbitrary text, with a few values the models care about (an empty string, a code-like one).
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "EUR", "DE", "a@b.co", "ord-1"]))
# timestamp-millis: an instant at millisecond precision in UTC (the codec's resolution).
INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def _arbitrary(schema: Any, example: Any) -> st.SearchStrategy[Any]:
    """Any value the Avro ``schema`` can write; ``example`` seeds nested records."""
    if isinstance(schema, list):  # a union: ["null", X]
        return st.one_of(*(avro_value(branch, example) for branch in schema))
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical == "uuid":
        return st.one_of(st.uuids(), TEXT)  # a string that is no UUID is valid Avro too
    if logical == "timestamp-millis":
        return st.one_of(INSTANTS, INT64)  # a raw long may be outside any datetime
    if kind == "record":
        example = example if isinstance(example, dict) else {}
        return st.fixed_dictionaries(
            {f["name"]: avro_value(f["type"], example.get(f["name"])) for f in schema["fields"]}
        )
    if kind == "array":
        items = example[0] if isinstance(example, list | tuple) and example else None
        return st.lists(avro_value(schema["items"], items), max_size=3)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": INT32,
        "long": INT64,
        "string": TEXT,
    }
    return simple[kind]


def avro_value(schema: Any, example: Any = None) -> st.SearchStrategy[Any]:
    """A value valid for the Avro ``schema`` (raw JSON form): ``example`` as it is, or arbitrary."""
    arbitrary = _arbitrary(schema, example)
    if example is None or not _fits(schema, example):
        return arbitrary
    return st.one_of(st.just(example), arbitrary)


def _fits(schema: Any, example: Any) -> bool:
    """Whether ``example`` is writable with ``schema`` as it is: an older version's record
    lacks fields of the newest (e.g. the envelope before saga types had ``order_id``)."""
    if isinstance(schema, dict) and schema.get("type") == "record":
        fields = schema["fields"]
        return (
            isinstance(example, dict)
            and set(example) == {f["name"] for f in fields}
            and all(_fits(f["type"], example[f["name"]]) for f in fields)
        )
    return True


def example_record(event: Event) -> dict[str, Any]:
    """The Avro record of a valid message carrying ``event`` (as the codec writes it), with a
    fixed envelope: a strategy's examples must not change between runs."""
    envelope = Envelope(
        event_id=uuid.UUID(int=1),
        event_type=event.event_type,
        saga_type="order",
        saga_key="ord-fuzz",
        correlation_id="ord-fuzz",
        occurred_at=T0,
        producer="fuzz",
        schema_version=event.schema_version,
    )
    return {**event.model_dump(), "envelope": envelope.model_dump()}


def frame(writer: SchemaVersion, record: dict[str, Any]) -> bytes:
    """``record`` in single-object encoding with ``writer``'s schema."""
    buf = io.BytesIO()
    buf.write(MAGIC + writer.fingerprint)
    schemaless_writer(buf, writer.parsed, record)
    return buf.getvalue()


def all_versions(registry: SchemaRegistry) -> list[SchemaVersion]:
    """Every schema version of every event type."""
    return [sv for event_type in registry.event_types for sv in registry.versions(event_type)]


def schema_valid_frames(registry: SchemaRegistry) -> st.SearchStrategy[bytes]:
    """A frame whose body is valid Avro for its writer schema, with arbitrary field values."""
    return st.one_of(
        [
            avro_value(sv.raw, example_record(EXAMPLES[sv.event_type])).map(
                functools.partial(frame, sv)
            )
            for sv in all_versions(registry)
        ]
    )


@st.composite
def envelopes(draw: st.DrawFn, event: Event) -> Envelope:
    """A valid envelope for ``event``: arbitrary ids, text and instant."""
    return Envelope(
        event_id=draw(st.uuids()),
        event_type=event.event_type,
        saga_type="order",
        saga_key=draw(st.text(min_size=1, max_size=40)),
        correlation_id=draw(st.text(max_size=40)),
        causation_id=draw(st.none() | st.text(max_size=40)),
        occurred_at=draw(INSTANTS),
        producer=draw(st.text(max_size=20)),
        schema_version=event.schema_version,
    )


def valid_messages() -> st.SearchStrategy[Message[Event]]:
    """A valid message of any event type: its example payload in a generated envelope."""
    events = st.sampled_from(sorted(EXAMPLES)).map(EXAMPLES.__getitem__)
    return events.flatmap(lambda event: envelopes(event).map(lambda env: Message(env, event)))


@st.composite
def truncated(draw: st.DrawFn, codec: Codec) -> bytes:
    """A valid frame cut short (anywhere, down to nothing)."""
    data = codec.encode(draw(valid_messages()))
    return data[: draw(st.integers(0, len(data) - 1))]


@st.composite
def bit_flipped(draw: st.DrawFn, codec: Codec) -> bytes:
    """A valid frame with one to four bits flipped (marker, fingerprint or body)."""
    data = bytearray(codec.encode(draw(valid_messages())))
    for bit in draw(st.lists(st.integers(0, len(data) * 8 - 1), min_size=1, max_size=4)):
        data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


@st.composite
def foreign_fingerprint(draw: st.DrawFn, codec: Codec, registry: SchemaRegistry) -> bytes:
    """A valid frame whose fingerprint is swapped for another schema version's."""
    data = codec.encode(draw(valid_messages()))
    others = [sv for sv in all_versions(registry) if sv.fingerprint != data[2:HEADER_SIZE]]
    return MAGIC + draw(st.sampled_from(others)).fingerprint + data[HEADER_SIZE:]


def undecodable(codec: Codec, data: bytes) -> bool:
    """Whether the codec refuses ``data`` (with its own error)."""
    try:
        codec.decode(data)
    except ContractError:
        return True
    return False


def malformed_values(codec: Codec, registry: SchemaRegistry) -> st.SearchStrategy[bytes]:
    """Record values the codec refuses: every kind of damage, the few that still decode
    (a harmless bit flip) filtered out."""
    damaged = st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=64).map(lambda body: MAGIC + body),
        truncated(codec),
        bit_flipped(codec),
        foreign_fingerprint(codec, registry),
        schema_valid_frames(registry),
    )
    return damaged.filter(lambda data: undecodable(codec, data))
