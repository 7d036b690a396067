"""A loop that tries again logs a lost connection as one warning line, anything else as an
error with its traceback; asyncpg's pool's warnings about a lost connection read the same."""

from __future__ import annotations

import io
import logging
import sys

import asyncpg
import pytest

from events.database import LostConnectionLines, connection_lost, log_loop_failure
from events.logs import TextFormatter, configure_logging
from events.settings import get_settings

log = logging.getLogger("choreo.test.loop")


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("crash"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connection refused"),
        FileNotFoundError(2, "No such file or directory"),
    ],
)
def test_a_lost_connection_is_one_warning_line(error, caplog):
    assert connection_lost(error)
    with caplog.at_level(logging.WARNING, logger=log.name):
        try:
            raise error
        except Exception:
            log_loop_failure(log, "%s: retry loop failed; trying again", "crm")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage() == (
        f"crm: retry loop failed; trying again (connection lost: {type(error).__name__}: {error})"
    )


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.UniqueViolationError("duplicate key"),
    ],
)
def test_anything_else_is_an_error_with_its_traceback(error, caplog):
    assert not connection_lost(error)
    with caplog.at_level(logging.WARNING, logger=log.name):
        try:
            raise error
        except Exception:
            log_loop_failure(log, "publishing the circuit breakers failed; trying again")
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert record.getMessage() == "publishing the circuit breakers failed; trying again"


def _pool_warning(error: Exception) -> logging.LogRecord:
    """The record asyncpg's pool writes when restoring its connection floor fails."""
    try:
        raise error
    except Exception:
        return logging.LogRecord(
            "asyncpg.pool", logging.WARNING, __file__, 571,
            "Failed to restore the pool connection floor; retrying", None, sys.exc_info(),
        )  # fmt: skip


def test_asyncpgs_pool_warning_about_a_lost_connection_is_one_line():
    error = asyncpg.CannotConnectNowError("the database system is starting up")
    record = _pool_warning(error)
    assert LostConnectionLines().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "Failed to restore the pool connection floor; retrying"
        " (connection lost: CannotConnectNowError: the database system is starting up)"
    )
    line = TextFormatter("crm").format(record)
    assert "Traceback" not in line
    assert "\n" not in line


def test_other_pool_warnings_keep_their_traceback():
    error = ValueError("a bug in a connection's init")
    record = _pool_warning(error)
    assert LostConnectionLines().filter(record)
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert "Traceback" in TextFormatter("crm").format(record)


def test_configured_processes_write_asyncpgs_lost_connections_as_one_line():
    pool, root = logging.getLogger("asyncpg.pool"), logging.getLogger()
    saved = pool.filters[:], root.handlers[:], root.level
    stream = io.StringIO()
    try:
        settings = get_settings().model_copy(update={"log_format": "text"})
        configure_logging("crm", settings)
        configure_logging("crm", settings)  # once, however often a process configures
        assert sum(isinstance(f, LostConnectionLines) for f in pool.filters) == 1
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError:
            pool.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    finally:
        pool.filters[:], root.handlers[:], level = saved
        root.setLevel(level)
    [line] = stream.getvalue().splitlines()
    assert line.endswith(
        "Failed to restore the pool connection floor; retrying"
        " (connection lost: ConnectionRefusedError: [Errno 111] Connection refused)"
    )
