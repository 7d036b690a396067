"""The wire format: Avro single-object encoding, schema resolution, and clear decode errors."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from contracts.catalog import OrderPlaced
from contracts.samples import sample_order_placed
from events.codec import HEADER_SIZE, MAGIC, Codec
from events.errors import DecodeError, UnknownSchemaError, ValidationError
from events.model import Message
from events.schemas import SchemaRegistry, load_version, plain_envelope


def _placed() -> Message:
    return Message.first(
        sample_order_placed(), saga_type="order", saga_key="ord-1", producer="test"
    )


def test_round_trip_keeps_envelope_and_payload(codec: Codec):
    message = _placed()
    decoded = codec.decode(codec.encode(message))
    assert decoded.envelope == message.envelope
    assert decoded.event == message.event


def test_value_starts_with_marker_and_fingerprint_of_newest_schema(
    codec: Codec, registry: SchemaRegistry
):
    data = codec.encode(_placed())
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:HEADER_SIZE] == registry.latest("order.placed").fingerprint


def test_fingerprint_matches_the_avro_specification_vector(tmp_path):
    # The Avro spec's CRC-64-AVRO of the schema "null" is 0x63dd24e7cc258f8a; single-object
    # encoding writes it little-endian.
    path = tmp_path / "v1.avsc"
    path.write_text('"null"')
    assert load_version("x", 1, path).fingerprint == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_garbage_bytes_are_a_decode_error(codec: Codec):
    with pytest.raises(DecodeError, match="not Avro single-object encoding"):
        codec.decode(b"hello, not avro")


def test_none_value_is_a_decode_error(codec: Codec):
    with pytest.raises(DecodeError, match="tombstone"):
        codec.decode(None)


def test_unknown_fingerprint_is_named(codec: Codec):
    data = MAGIC + bytes.fromhex("0123456789abcdef") + b"\x00"
    with pytest.raises(UnknownSchemaError, match="0123456789abcdef"):
        codec.decode(data)


def test_truncated_body_is_a_decode_error(codec: Codec):
    data = codec.encode(_placed())
    with pytest.raises(DecodeError, match=r"corrupt Avro body for order\.placed"):
        codec.decode(data[: len(data) // 2])


def test_trailing_bytes_are_a_decode_error(codec: Codec):
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(codec.encode(_placed()) + b"\x00\x01")


def _write_with(schema_path, record: dict, registry: SchemaRegistry, version: int) -> bytes:
    sv = registry.get("order.placed", version)
    buf = io.BytesIO()
    buf.write(MAGIC + sv.fingerprint)
    schemaless_writer(buf, sv.parsed, record)
    return buf.getvalue()


def _record(message: Message, *, drop: tuple[str, ...] = ()) -> dict:
    record = message.event.model_dump()
    for name in drop:
        record.pop(name)
    record["envelope"] = message.envelope.model_dump()
    return record


def test_schema_valid_but_semantically_invalid_names_the_field(
    codec: Codec, registry: SchemaRegistry
):
    record = _record(_placed())
    record["items"][0]["quantity"] = 0  # Avro int is fine; the model requires >= 1
    data = _write_with(None, record, registry, registry.latest("order.placed").version)
    with pytest.raises(ValidationError, match=r"items\.0\.quantity"):
        codec.decode(data)


def test_event_written_with_v1_reads_through_the_current_schema(
    codec: Codec, registry: SchemaRegistry
):
    message = _placed()
    v1_fields = {
        f["name"] for f in json.loads(registry.get("order.placed", 1).path.read_text())["fields"]
    }
    record = _record(message, drop=("customer_name", "channel", "personal_data"))
    assert set(record) == v1_fields
    record["envelope"]["schema_version"] = 1
    del record["envelope"]["saga_type"]  # v1's envelope predates saga types
    record["envelope"]["order_id"] = record["envelope"].pop("saga_key")
    decoded = codec.decode(_write_with(None, record, registry, 1))
    assert isinstance(decoded.event, OrderPlaced)
    assert decoded.envelope.schema_version == 1
    assert decoded.envelope.saga_type == "order"  # the default for records before saga types
    assert decoded.envelope.saga_key == message.envelope.saga_key  # order_id, read by alias
    assert decoded.event.customer_name is None  # v2 default
    assert decoded.event.channel == "web"  # v2 default
    assert decoded.event.personal_data == "plain"  # v4 default: written before sealing
    assert decoded.event.items == message.event.items
    assert decoded.event.total_minor == message.event.total_minor
    assert (decoded.envelope.event_id, decoded.envelope.occurred_at) == (
        message.envelope.event_id, message.envelope.occurred_at
    )  # fmt: skip


def test_the_reading_schemas_are_the_files_without_the_envelopes_logical_types(
    registry: SchemaRegistry,
):
    """The codec reads the envelope's UUID and timestamp as their string and long: the same
    bytes (logical types are not in the canonical form, so the same fingerprint)."""
    for event_type in registry.event_types:
        for sv in registry.versions(event_type):
            plain = plain_envelope(sv.raw)
            assert to_parsing_canonical_form(plain) == to_parsing_canonical_form(sv.raw)
            envelope = next(f["type"] for f in plain["fields"] if f["name"] == "envelope")
            assert [f["name"] for f in envelope["fields"] if "logicalType" in str(f)] == []


def test_the_envelope_reads_as_the_message_was_written(codec: Codec):
    """UTC, to the millisecond, as fastavro's logical types gave it."""
    message = _placed()
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded.envelope.event_id, uuid.UUID)
    assert decoded.envelope.occurred_at.tzinfo is not None
    assert decoded.envelope.occurred_at.utcoffset() == timedelta(0)
    assert decoded.envelope.occurred_at == message.envelope.occurred_at


def _with_plain_envelope(registry: SchemaRegistry, **envelope: object) -> bytes:
    """order.placed bytes whose envelope fields ``envelope`` are written as they are."""
    sv = registry.latest("order.placed")
    record = _record(_placed())
    written = record["envelope"]
    written["event_id"] = str(written["event_id"])
    written["occurred_at"] = int(written["occurred_at"].timestamp() * 1000)
    written.update(envelope)
    buf = io.BytesIO()
    buf.write(MAGIC + sv.fingerprint)
    schemaless_writer(buf, parse_schema(plain_envelope(sv.raw)), record)
    return buf.getvalue()


def test_an_envelope_id_that_is_no_uuid_names_the_field(codec: Codec, registry: SchemaRegistry):
    with pytest.raises(ValidationError, match=r"invalid order\.placed: event_id: .*UUID"):
        codec.decode(_with_plain_envelope(registry, event_id="not-a-uuid"))


def test_an_envelope_time_out_of_range_is_a_decode_error(codec: Codec, registry: SchemaRegistry):
    with pytest.raises(DecodeError, match=r"order\.placed envelope without a valid occurred_at"):
        codec.decode(_with_plain_envelope(registry, occurred_at=2**62))
