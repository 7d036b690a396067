"""What the dead-letters page shows of a letter: its message decoded, or its bytes in hex; and
which letters its filters keep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from events.codec import Codec
from events.dlq import dead_letter
from events.redrive import DeadLetterEntry
from projections.console.dead_letters import matching
from projections.letters import decoded
from tests.integration.test_projector import flow


def test_a_decodable_message_shows_envelope_and_masked_payload(codec: Codec):
    message = flow("ord-1", ["order.placed"])[0]
    shown = decoded(codec, codec.encode(message))
    assert shown["error"] is None
    document = orjson.loads(shown["json"])
    assert document["envelope"]["saga_key"] == "ord-1"
    assert document["payload"]["customer_email"] == "***"


def test_an_undecodable_message_shows_why_and_its_bytes_in_hex(codec: Codec):
    shown = decoded(codec, b"\x00\xff" + bytes(600))
    assert shown["json"] is None
    assert "not Avro single-object encoding" in shown["error"]
    assert shown["hex"].startswith("00 ff 00")
    assert len(shown["hex"].split()) == 512
    assert shown["size"] == 602


def _entry(n: int, topic: str, reason: str, redriven: bool = False) -> DeadLetterEntry:
    letter = dead_letter(
        error=ValueError(reason),
        consumer="c",
        topic=topic,
        partition=0,
        offset=n,
        key=None,
        value=None,
        headers=None,
        attempts=1,
    )
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n) if redriven else None
    return DeadLetterEntry(f"0:{n}", letter, at, "ann" if redriven else None)


def ids(found: list[DeadLetterEntry]) -> list[str]:
    return [e.id for e in found]


def test_filters_keep_a_topic_a_word_of_the_reason_and_pending_letters_newest_first():
    entries = [
        _entry(1, "t.order", "stock service down"),
        _entry(2, "t.payment", "gateway down"),
        _entry(3, "t.order", "bad bytes"),
        _entry(4, "t.order", "stock again", redriven=True),
    ]
    assert ids(matching(entries, topic=None, reason=None, redriven=False)) == ["0:3", "0:2", "0:1"]
    assert ids(matching(entries, topic="t.order", reason=None, redriven=True)) == [
        "0:4",
        "0:3",
        "0:1",
    ]
    assert ids(matching(entries, topic=None, reason="STOCK", redriven=False)) == ["0:1"]
    assert ids(matching(entries, topic=None, reason="valueerror", redriven=False)) == [
        "0:3",
        "0:2",
        "0:1",
    ]
