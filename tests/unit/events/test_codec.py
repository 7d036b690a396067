"""The wire format: Avro single-object encoding, schema resolution, and clear decode errors."""

from __future__ import annotations

import io
import json

import pytest
from fastavro import schemaless_writer

from contracts.catalog import OrderPlaced
from contracts.samples import sample_order_placed
from events.codec import HEADER_SIZE, MAGIC, Codec
from events.errors import DecodeError, UnknownSchemaError, ValidationError
from events.model import Message
from events.schemas import SchemaRegistry, load_version


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
