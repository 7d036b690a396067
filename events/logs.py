"""Readable, correlated, PII-free logs.

Processes log JSON lines (``CHOREO_LOG_FORMAT=json``, the default) carrying ``service``,
``trace_id``, ``span_id`` and ``order_id``; ``choreo run`` renders them readably. ``text`` is
for running one process by hand. E-mail addresses are redacted from every message whatever
the format: a log line must never carry a customer's address. A warning or error repeated word
for word is written once per window, with how many times it came meanwhile
(:class:`RepeatedLines`): a broker away for seconds made each process log thousands of
aiokafka's identical reconnect errors.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import orjson
from opentelemetry import trace

from events.database import LostConnectionLines
from events.settings import Settings

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


class RepeatedLines(logging.Filter):
    """Writes a warning or error that repeats word for word (and with the same exception) once
    per ``window_s``; the first one after a window carries how many were left out in it.

    aiokafka logs every failed reconnect at ERROR, from each of a client's loops: a broker
    down for 5 s (15 s until it answered) made each process write about 1,500 lines, burying
    the few that said what happened. Lines below WARNING (each order's own) always pass.
    Repeats that stop inside a window are left out without a count (nothing is written until
    the line comes again).
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, int, str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()  # handlers filter outside their own lock

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        error = record.exc_info[1] if record.exc_info else None
        key = (record.name, record.levelno, record.getMessage(), repr(error))
        now = self.clock()
        with self._lock:
            since, left_out = self._seen.get(key, (now - self.window_s, 0))
            if now - since < self.window_s:
                self._seen[key] = (since, left_out + 1)
                return False
            if len(self._seen) > 1000:  # forget what has not come back within its window
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
            self._seen[key] = (now, 0)
        if left_out:
            record.msg = f"{key[2]} ({left_out} more like it in the last {now - since:.0f} s)"
            record.args = None
        return True


def configure_logging(service: str, settings: Settings) -> None:
    """Send this process's logs to stderr as JSON lines or text (``log_format``), at
    ``log_level``, repeats folded per ``log_repeat_window_s`` (:class:`RepeatedLines`; 0: not
    folded)."""
    handler = logging.StreamHandler(sys.stderr)
    json_lines = settings.log_format == "json"
    handler.setFormatter(JsonLineFormatter(service) if json_lines else TextFormatter(service))
    if settings.log_repeat_window_s > 0:
        handler.addFilter(RepeatedLines(settings.log_repeat_window_s))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    pool = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, LostConnectionLines) for f in pool.filters):
        pool.addFilter(LostConnectionLines())


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
