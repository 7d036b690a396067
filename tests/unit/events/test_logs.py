"""Log lines: JSON with the order and trace, readable rendering, and no e-mail addresses."""

from __future__ import annotations

import logging

import orjson

from events.logs import JsonLineFormatter, TextFormatter, current_order_id, redact, render_json_line


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("choreo.test", logging.INFO, __file__, 1, msg, None, None)


def test_redact_keeps_the_domain_and_drops_the_person():
    assert redact("sent to ada.lovelace+x@example.co.uk now") == "sent to ***@example.co.uk now"
    assert redact("no address here") == "no address here"


def test_json_lines_carry_service_and_order_and_are_redacted():
    token = current_order_id.set("ord-1")
    try:
        line = JsonLineFormatter("email").format(_record("bounced: ada@example.com"))
    finally:
        current_order_id.reset(token)
    entry = orjson.loads(line)
    assert entry["service"] == "email"
    assert entry["order_id"] == "ord-1"
    assert entry["msg"] == "bounced: ***@example.com"


def test_text_lines_are_redacted_too():
    line = TextFormatter("email").format(_record("to ada@example.com"))
    assert "ada@" not in line
    assert "email" in line


def test_json_lines_render_readably_and_other_lines_pass_through():
    line = orjson.dumps(
        {"ts": "2026-01-01T12:00:01.000+00:00", "level": "info", "msg": "charged",
         "order_id": "ord-9", "trace_id": "ab" * 16}
    ).decode()  # fmt: skip
    assert render_json_line(line) == "12:00:01 INFO    [ord-9] charged trace=abababab"
    assert render_json_line("plain text") == "plain text"
