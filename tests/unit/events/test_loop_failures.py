"""A loop that tries again logs a lost connection as one warning line, anything else as an
error with its traceback."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from events.database import connection_lost, log_loop_failure

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
