"""Log lines: JSON with the order and trace, readable rendering, and no e-mail addresses."""

from __future__ import annotations

import logging

import orjson

from events.logs import (
    JsonLineFormatter,
    RepeatedLines,
    TextFormatter,
    configure_logging,
    current_order_id,
    redact,
    render_json_line,
)
from events.settings import get_settings


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


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _warning(msg: str, *args: object, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_a_repeated_error_is_written_once_per_window_then_with_its_count():
    clock = _Clock()
    lines = RepeatedLines(window_s=10.0, clock=clock)
    refused = ("Unable connect to node with id %s: %s", 1, "[Errno 111] Connection refused")
    assert lines.filter(_warning(*refused))
    passed = []
    for _ in range(770):
        clock.now += 0.01
        passed.append(lines.filter(_warning(*refused)))
    assert not any(passed)
    clock.now = 110.5
    record = _warning(*refused)
    assert lines.filter(record)
    assert record.getMessage() == (
        "Unable connect to node with id 1: [Errno 111] Connection refused"
        " (770 more like it in the last 10 s)"
    )
    clock.now = 121.0  # nothing left out since: written as it is
    record = _warning(*refused)
    assert lines.filter(record)
    assert record.getMessage().endswith("Connection refused")


def test_other_lines_exceptions_and_info_lines_are_not_folded():
    lines = RepeatedLines(window_s=10.0, clock=_Clock())
    assert lines.filter(_warning("Unable connect to node with id %s", 1))
    assert lines.filter(_warning("Unable connect to node with id %s", 2))
    assert lines.filter(_warning("retry loop failed", error=OSError("socket gone")))
    assert lines.filter(_warning("retry loop failed", error=ConnectionResetError("reset")))
    assert not lines.filter(_warning("retry loop failed", error=OSError("socket gone")))
    info = logging.LogRecord("choreo", logging.INFO, __file__, 1, "charged", None, None)
    assert lines.filter(info)
    assert lines.filter(info)


def test_configured_processes_fold_repeats_unless_the_window_is_0():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        settings = get_settings().model_copy(update={"log_format": "text"})
        configure_logging("crm", settings)
        [folding] = [f for f in root.handlers[0].filters if isinstance(f, RepeatedLines)]
        assert folding.window_s == 10.0
        configure_logging("crm", settings.model_copy(update={"log_repeat_window_s": 2.5}))
        [folding] = [f for f in root.handlers[0].filters if isinstance(f, RepeatedLines)]
        assert folding.window_s == 2.5
        configure_logging("crm", settings.model_copy(update={"log_repeat_window_s": 0}))
        assert not any(isinstance(f, RepeatedLines) for f in root.handlers[0].filters)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
