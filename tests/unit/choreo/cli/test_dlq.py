"""`choreo dlq show`: a letter's facts and its original message, readable or as JSON."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from choreo.cli import app
from choreo.cli import dlq as dlq_cli
from contracts.samples import EXAMPLES
from events.codec import Codec
from events.dlq import DeadLetter
from events.model import Message
from events.redrive import DeadLetterEntry


def _letter(value: bytes, **fields: object) -> DeadLetter:
    return DeadLetter(
        reason="handler raised ValueError: the warehouse is on fire",
        error_type="ValueError", consumer="choreo.inventory", source_topic="choreo.order",
        source_partition=2, source_offset=41, attempts=5, dead_at=datetime(2026, 12, 6, tzinfo=UTC),
        event_type="order.placed", key_b64=base64.b64encode(b"ord-1/2").decode(),
        value_b64=base64.b64encode(value).decode(),
        headers=[("traceparent", base64.b64encode(b"00-abc-def-01").decode())],
        **fields,
    )  # fmt: skip


@pytest.fixture
def placed(codec: Codec) -> bytes:
    message = Message.first(
        EXAMPLES["order.placed"], saga_type="order", saga_key="ord-1/2", producer="test"
    )
    return codec.encode(message)


def _show(monkeypatch: pytest.MonkeyPatch, entry: DeadLetterEntry, *args: str) -> str:
    monkeypatch.setattr(dlq_cli, "_dead_letters", lambda include_redriven: [entry])
    result = CliRunner().invoke(app, ["dlq", "show", entry.id, *args], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_letter_reads_as_its_facts_and_its_decoded_message_with_personal_data_masked(
    monkeypatch: pytest.MonkeyPatch, placed: bytes
) -> None:
    output = _show(monkeypatch, DeadLetterEntry("2:9", _letter(placed)))
    for text in (
        "2:9", "pending", "ord-1/2", "order.placed", "choreo.inventory",
        "choreo.order partition 2 offset 41", "ValueError", "the warehouse is on fire",
        "header traceparent", "00-abc-def-01", "(personal data masked)", '"envelope"',
        '"saga_key": "ord-1/2"', '"payload"',
    ):  # fmt: skip
        assert text in output, text
    assert str(EXAMPLES["order.placed"].model_dump()["customer_email"]) not in output
    assert "value_b64" not in output
    assert max(len(line) for line in output.splitlines()) <= 80


def test_a_letter_that_does_not_decode_shows_why_and_its_bytes_in_hex(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redriven = DeadLetterEntry(
        "0:3", _letter(b"\x00garbage"), redriven_at=datetime(2026, 12, 6, 1, tzinfo=UTC),
        redriven_by="ops",
    )  # fmt: skip
    output = _show(monkeypatch, redriven)
    assert "redriven 2026-12-06T01:00:00+00:00 by ops" in output
    assert "does not decode: not Avro single-object encoding" in output
    assert "all of its 8 bytes in hex" in output
    assert "00 67 61 72 62 61 67 65" in output


def test_json_keeps_the_original_bytes_in_base64(
    monkeypatch: pytest.MonkeyPatch, placed: bytes
) -> None:
    data = json.loads(_show(monkeypatch, DeadLetterEntry("2:9", _letter(placed)), "--json"))
    assert data["id"] == "2:9"
    assert base64.b64decode(data["value_b64"]) == placed
    assert data["redriven_at"] is None


def test_an_unknown_letter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlq_cli, "_dead_letters", lambda include_redriven: [])
    result = CliRunner().invoke(app, ["dlq", "show", "9:9"])
    assert result.exit_code != 0
    assert "no dead letter 9:9" in result.output
