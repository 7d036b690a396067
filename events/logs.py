"""Readable, correlated, PII-free logs.

Processes log JSON lines (``CHOREO_LOG_FORMAT=json``, the default) carrying ``service``,
``trace_id``, ``span_id`` and ``order_id``; ``choreo run`` renders them readably. ``text`` is
for running one process by hand. E-mail addresses are redacted from every message whatever
the format: a log line must never carry a customer's address.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
from opentelemetry import trace

current_order_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "choreo_order_id", default=None
)
"""The order the current task works on; the runtime sets it around each message."""


@contextlib.contextmanager
def order_context(key: bytes | None) -> Iterator[None]:
    """Logs written inside the block carry the order id ``key`` (a record's Kafka key)."""
    token = current_order_id.set((key or b"").decode(errors="replace") or None)
    try:
        yield
    finally:
        current_order_id.reset(token)


EMAIL = re.compile(r"[\w.+-]+@([\w-]+\.)+[\w-]+")


def redact(text: str) -> str:
    """``ada@example.com`` → ``***@example.com``: keeps the domain, which is useful for
    debugging deliveries, and drops the person."""
    return EMAIL.sub(lambda m: "***@" + m.group(0).split("@", 1)[1], text)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line, with the trace, span and order the line belongs to."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        order_id = current_order_id.get()
        if order_id is not None:
            entry["order_id"] = order_id
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO    payment   [ord-…] message``, redacted."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        order_id = current_order_id.get()
        line = super().format(record)
        prefix = f"{self.service:<16} " + (f"[{order_id}] " if order_id else "")
        time_level, _, message = line.partition(f"{record.levelname:<7} ")
        return redact(f"{time_level}{record.levelname:<7} {prefix}{message}")


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send this process's logs to stderr as JSON lines or text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def render_json_line(line: str) -> str:
    """A JSON log line as readable text (for `choreo run`); other lines unchanged."""
    if not line.startswith("{"):
        return line
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    if not isinstance(entry, dict) or "msg" not in entry:
        return line
    ts = str(entry.get("ts", ""))[11:19]
    level = str(entry.get("level", "")).upper()
    order = f"[{entry['order_id']}] " if entry.get("order_id") else ""
    trace_id = f" trace={str(entry['trace_id'])[:8]}" if entry.get("trace_id") else ""
    text = f"{ts} {level:<7} {order}{entry['msg']}{trace_id}"
    if entry.get("exc"):
        text += "\n" + str(entry["exc"])
    return text
