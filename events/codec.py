"""Encode and decode Choreo messages: Avro binary in Avro single-object encoding.

Wire format of a Kafka record value (https://avro.apache.org/docs/current/specification/
#single-object-encoding)::

    C3 01 | 8-byte CRC-64-AVRO fingerprint of the writer schema (little-endian) | Avro binary

The writer always uses the newest schema version of the event type. The reader looks the
writer schema up by fingerprint and resolves it to the newest version it knows, so events
written with an older schema stay readable (Avro schema resolution).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
from fastavro import schemaless_reader, schemaless_writer

from events.errors import DecodeError, UnknownSchemaError, ValidationError, field_problems
from events.model import Envelope, Event, Message
from events.schemas import SchemaRegistry

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
CONTENT_TYPE = "application/vnd.apache.avro+binary; encoding=single-object"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Codec:
    """Turns :class:`Message` objects into bytes and back, checking the contract both ways."""

    def __init__(self, registry: SchemaRegistry, catalog: Mapping[str, type[Event]]) -> None:
        self.registry = registry
        self.catalog = catalog
        for event_type, model in self.catalog.items():
            latest = registry.latest(event_type)
            if latest.version != model.schema_version:
                raise UnknownSchemaError(
                    f"{model.__name__} is for {event_type} v{model.schema_version} but the "
                    f"newest schema is v{latest.version} ({latest.path})"
                )

    def encode(self, message: Message[Event]) -> bytes:
        """Avro single-object bytes of ``message`` with the newest schema of its type."""
        schema = self.registry.latest(message.envelope.event_type)
        record: dict[str, Any] = message.event.model_dump()
        record["envelope"] = message.envelope.model_dump()
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint)
        schemaless_writer(buf, schema.parsed, record)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> Message[Event]:
        """The message in ``data`` (see :meth:`decode_with_payload`)."""
        return self.decode_with_payload(data)[0]

    def decode_with_payload(self, data: bytes | None) -> tuple[Message[Event], dict[str, Any]]:
        """The message in ``data`` and its payload as the Avro record's dict (the same values
        ``message.event.model_dump()`` would give, without building them again).

        Raises:
            DecodeError: not single-object Avro, or not valid for the writer schema.
            UnknownSchemaError: the fingerprint names no known schema.
            ValidationError: decodes, but breaks a rule of the event model.
        """
        if data is None:
            raise DecodeError("empty record value (tombstone): not a Choreo event")
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError(
                f"not Avro single-object encoding: expected marker c301, got {data[:2].hex()!r}"
                f" in a {len(data)}-byte value"
            )
        writer = self.registry.by_fingerprint(data[2:HEADER_SIZE])
        reader = self.registry.latest(writer.event_type)
        model = self.catalog.get(writer.event_type)
        if model is None:
            raise UnknownSchemaError(f"event type {writer.event_type!r} is not in the catalog")
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(
                body, writer.reading, None if reader is writer else reader.reading
            )
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(
                f"corrupt Avro body for {writer.event_type} v{writer.version}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if body.tell() != len(data):
            raise DecodeError(
                f"{len(data) - body.tell()} trailing bytes after the "
                f"{writer.event_type} v{writer.version} record"
            )
        if not isinstance(record, dict):
            raise DecodeError(f"{writer.event_type} decoded to {type(record).__name__}")
        meta = record.pop("envelope", None)
        try:
            # The envelope's timestamp-millis, read as its long (SchemaVersion.reading), as
            # fastavro would convert it (a timedelta: exact, unlike a float of seconds).
            meta["occurred_at"] = EPOCH + timedelta(milliseconds=meta["occurred_at"])
        except (KeyError, TypeError, OverflowError) as exc:
            raise DecodeError(
                f"{writer.event_type} envelope without a valid occurred_at: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            envelope = Envelope.model_validate(meta)
            event = model.model_validate(record)
        except pydantic.ValidationError as exc:
            raise ValidationError(_describe(writer.event_type, exc)) from exc
        if envelope.event_type != writer.event_type:
            raise ValidationError(
                f"envelope says {envelope.event_type!r} but the schema is {writer.event_type!r}"
            )
        return Message(envelope, event), record


def _describe(event_type: str, exc: pydantic.ValidationError) -> str:
    """One line naming each invalid field, e.g. ``items.0.quantity: must be >= 1``."""
    return f"invalid {event_type}: {field_problems(exc, '(event)')}"
