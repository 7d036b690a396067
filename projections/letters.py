"""A dead letter's original message for people: decoded with the catalog's schemas (envelope
and payload, personal data masked as in the logs) or, when it does not decode, why not and its
first bytes in hex. The console's dead-letters page and ``choreo dlq show`` show it alike."""

from __future__ import annotations

from typing import Any

import orjson

from events.codec import Codec
from events.errors import ContractError
from projections.masking import mask

HEX_BYTES = 512
"""Undecodable messages show this many bytes in hex."""

Decoding = tuple[dict[str, Any], dict[str, Any]] | ContractError
"""A letter's original message decoded (envelope, payload), or why it does not decode."""


def decode(codec: Codec, value: bytes | None) -> Decoding:
    """The original message of a letter, decoded with the catalog's schemas."""
    try:
        message, payload = codec.decode_with_payload(value)
    except ContractError as exc:
        return exc
    return message.envelope.model_dump(mode="json"), payload


def shown(
    decoding: Decoding, value: bytes | None, forgotten: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The original message of a letter for people: ``json`` (envelope and masked payload,
    indented; a forgotten customer's sealed values erased) when it decodes, else ``error`` and
    ``hex`` (the first :data:`HEX_BYTES`)."""
    data = value or b""
    if isinstance(decoding, ContractError):
        return {
            "json": None,
            "error": str(decoding),
            "hex": data[:HEX_BYTES].hex(" "),
            "size": len(data),
        }
    envelope, payload = decoding
    document = {"envelope": envelope, "payload": mask(payload, forgotten)}
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str).decode()
    return {"json": text, "error": None, "hex": None, "size": len(data)}


def decoded(codec: Codec, value: bytes | None) -> dict[str, Any]:
    """:func:`shown` of ``value`` decoded, with no customer known to be forgotten."""
    return shown(decode(codec, value), value)
