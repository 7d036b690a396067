"""The schema registry: every Avro schema version in ``schemas/``, by event type and fingerprint.

There is no registry server. Each schema file is identified on the wire by the CRC-64-AVRO
fingerprint of its Parsing Canonical Form, as Avro single-object encoding prescribes, so any
reader holding the same ``.avsc`` files (in any language) resolves the writer schema itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from events.errors import ChoreoError, UnknownSchemaError

_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One ``schemas/<event_type>/v<N>.avsc`` file, parsed."""

    event_type: str
    version: int
    path: Path
    raw: dict[str, Any]
    parsed: Any
    fingerprint: bytes
    """8 bytes: CRC-64-AVRO of the canonical form, little-endian (single-object encoding)."""
    reading: Any = None
    """The schema the codec decodes with: ``parsed``, but the envelope's ``event_id`` and
    ``occurred_at`` read as their plain string and long (see :func:`plain_envelope`)."""

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


class SchemaRegistry:
    """All schema versions of all event types, loaded from a folder once."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._by_type: dict[str, dict[int, SchemaVersion]] = {}
        self._latest: dict[str, SchemaVersion] = {}
        for sv in versions:
            clash = self._by_fingerprint.get(sv.fingerprint)
            if clash is not None:
                raise ChoreoError(
                    f"{sv.path} and {clash.path} have the same canonical form; "
                    "a new version must change the schema"
                )
            self._by_fingerprint[sv.fingerprint] = sv
            self._by_type.setdefault(sv.event_type, {})[sv.version] = sv
        # Looked up for every message encoded: computed once.
        self._latest = {t: versions[max(versions)] for t, versions in self._by_type.items()}

    @classmethod
    def load(cls, directory: Path) -> SchemaRegistry:
        """Read every ``<event_type>/v<N>.avsc`` below ``directory``."""
        versions: list[SchemaVersion] = []
        if not directory.is_dir():
            raise ChoreoError(f"schema folder {directory} does not exist")
        for event_type in event_types_in(directory):
            type_dir = directory / event_type
            for path in sorted(type_dir.glob("*.avsc")):
                match = _VERSION_FILE.match(path.name)
                if match is None:
                    raise ChoreoError(f"{path}: schema files are named v<N>.avsc")
                versions.append(load_version(type_dir.name, int(match.group(1)), path))
        return cls(versions)

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownSchemaError(
                f"unknown writer schema fingerprint {fp.hex()}: no file in schemas/ has it"
            ) from None

    def latest(self, event_type: str) -> SchemaVersion:
        try:
            return self._latest[event_type]
        except KeyError:
            raise UnknownSchemaError(f"no schema for event type {event_type!r}") from None

    def get(self, event_type: str, version: int) -> SchemaVersion:
        try:
            return self._by_type[event_type][version]
        except KeyError:
            raise UnknownSchemaError(f"no schema {event_type} v{version}") from None

    def versions(self, event_type: str) -> list[SchemaVersion]:
        """Every version of one event type, oldest first."""
        return [v for _, v in sorted(self._by_type.get(event_type, {}).items())]

    @property
    def event_types(self) -> list[str]:
        return sorted(self._by_type)


def event_types_in(directory: Path) -> list[str]:
    """The event types with schemas below ``directory`` (one folder each), sorted."""
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and any(p.glob("*.avsc")))


def load_version(event_type: str, version: int, path: Path) -> SchemaVersion:
    """Parse one schema file and compute its fingerprint."""
    raw = orjson.loads(path.read_bytes())
    try:
        parsed = parse_schema(raw)
    except Exception as exc:
        raise ChoreoError(f"{path}: not a valid Avro schema: {exc}") from exc
    canonical = to_parsing_canonical_form(raw)
    return SchemaVersion(
        event_type=event_type,
        version=version,
        path=path,
        raw=raw,
        parsed=parsed,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        reading=parse_schema(plain_envelope(raw)),
    )


def plain_envelope(raw: Any) -> Any:
    """``raw`` with the logical types of its envelope's fields left out (the same bytes on the
    wire; read as the underlying string and long).

    fastavro converts a logical type by calling a Python function per field: the envelope's
    UUID and timestamp took a fifth of a whole decode. The codec makes the same values from
    the plain ones in a fraction of that (pydantic parses the UUID).
    """
    if not isinstance(raw, dict) or "fields" not in raw:
        return raw
    fields = []
    for field in raw["fields"]:
        if field["name"] == "envelope" and isinstance(field["type"], dict):
            envelope = field["type"]
            plain = [
                {**f, "type": f["type"]["type"]}
                if isinstance(f["type"], dict) and "logicalType" in f["type"]
                else f
                for f in envelope["fields"]
            ]
            field = {**field, "type": {**envelope, "fields": plain}}
        fields.append(field)
    return {**raw, "fields": fields}
