"""PostgreSQL for Choreo's processes: the pool, each process's schema and its runtime tables.

Every process keeps its tables in its own schema (``<prefix>_<service>``, :func:`schema_name`),
next to its own state tables: no process reads another's. :func:`runtime_ddl` creates what
every transactional process has: the inbox (dedupe), the retry queue and the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import zlib
from collections.abc import AsyncIterator
from typing import TypeAlias
from urllib.parse import parse_qs, urlsplit

import asyncpg

from events import tracing
from events.errors import START_THE_LOCAL_STACK, StackError
from events.settings import Settings, local_database_url
from events.stopping import close_within

Connection: TypeAlias = asyncpg.Connection


def schema_name(settings: Settings, process: str) -> str:
    """The PostgreSQL schema of one process: ``<prefix>_<name>``, the topic prefix and the
    name made an identifier (``saga-coordinator`` → ``saga_coordinator``).

    The one place the name is computed: the runtime migrates it and hands it to the handlers'
    context; tools and tests ask the process's :meth:`~events.process.ProcessSpec.schema`.
    """
    identifier = "".join(ch if ch.isalnum() else "_" for ch in f"{settings.topic_prefix}{process}")
    return identifier.lower().strip("_")


def runtime_ddl(schema: str) -> str:
    """Tables every transactional process has: the inbox and the outbox."""
    return f"""
    CREATE TABLE IF NOT EXISTS {schema}.inbox (
        consumer     text        NOT NULL,
        event_id     uuid        NOT NULL,
        event_type   text        NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
    );
    CREATE TABLE IF NOT EXISTS {schema}.retry_queue (
        id            bigserial   PRIMARY KEY,
        consumer      text        NOT NULL,
        topic         text        NOT NULL,
        partition     int         NOT NULL,
        "offset"      bigint      NOT NULL,
        key           bytea,
        value         bytea,
        header_keys   text[]      NOT NULL,
        header_values bytea[]     NOT NULL,
        attempts      int         NOT NULL,
        due_at        timestamptz NOT NULL,
        last_error    text        NOT NULL,
        UNIQUE (consumer, topic, partition, "offset")
    );
    CREATE INDEX IF NOT EXISTS retry_queue_due ON {schema}.retry_queue (due_at);
    CREATE TABLE IF NOT EXISTS {schema}.outbox (
        id            bigserial   PRIMARY KEY,
        topic         text        NOT NULL,
        key           bytea       NOT NULL,
        value         bytea       NOT NULL,
        header_keys   text[]      NOT NULL,
        header_values bytea[]     NOT NULL,
        event_type    text        NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now()
    );
    -- Staging asks whether an older row of its keys still waits (events.outbox's fence).
    CREATE INDEX IF NOT EXISTS outbox_key ON {schema}.outbox (key);
    """


class Database:
    """A connection pool with the process's lifecycle (``start``/idempotent ``stop``)."""

    def __init__(self, settings: Settings, *, max_size: int = 10) -> None:
        self.settings = settings
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        # Concurrent first uses (a burst of orders) must share one pool, not open one each.
        self._starting = asyncio.Lock()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StackError("the database is not started")
        return self._pool

    async def start(self) -> None:
        async with self._starting:
            if self._pool is not None:
                return
            try:
                self._pool = await asyncpg.create_pool(
                    self.settings.database_url,
                    min_size=1,
                    max_size=self.max_size,
                    reset=_no_session_state,
                )
            except (OSError, asyncpg.PostgresError) as exc:
                raise unreachable(self.settings, exc) from exc

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Cancelled by the timeout, asyncpg terminates the pool's connections instead.
            await close_within(
                pool.close(), "the PostgreSQL pool", "an open transaction rolls back"
            )

    async def __aenter__(self) -> Database:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def migrate(self, schema: str, *ddl: str) -> None:
        """Create the schema, the runtime tables and the given DDL (``{schema}`` is substituted)
        once.

        Concurrent starts of processes sharing a schema serialize on an advisory lock.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id(f"migrate:{schema}"))
            # Not `IF NOT EXISTS`: that needs CREATE on the database even when the schema
            # exists, which a process's own role lacks (its schema is made for it: choreo/roles).
            if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
                await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.execute(runtime_ddl(schema))
            for statement in ddl:
                await conn.execute(statement.format(schema=schema))


async def _no_session_state(conn: Connection) -> None:
    """Pool reset hook: Choreo keeps no session state (advisory locks are transaction-scoped,
    no LISTEN, no SET), so a released connection needs no reset query, which would otherwise
    cost a round trip per acquire. asyncpg still rolls back a transaction left open."""


@contextlib.asynccontextmanager
async def untraced_transaction(conn: Connection) -> AsyncIterator[None]:
    """A transaction on ``conn`` whose begin, commit and rollback make no spans: it spans
    many messages' traces (a delivery batch, a timer pass), so its statements belong to none;
    the statements run inside it are traced as usual."""
    transaction = conn.transaction()
    with tracing.housekeeping():
        await transaction.start()
    try:
        yield
    except BaseException:
        with tracing.housekeeping():
            await transaction.rollback()
        raise
    with tracing.housekeeping():
        await transaction.commit()


def unreachable(settings: Settings, error: OSError | asyncpg.PostgresError) -> StackError:
    """The error of a connection to the settings' database that failed: where it went (never
    the password), why, and, when nothing answered at the local stack's address, how that
    stack is started."""
    url = settings.database_url
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    folder = query.get("host", [""])[0]
    port = query.get("port", [""])[0] or parts.port or 5432
    where = f"{folder} (Unix socket, port {port})" if folder else f"{parts.hostname}:{port}"
    # No socket file, or a refused connection: "[Errno 2] No such file or directory" said less.
    silent = isinstance(error, FileNotFoundError | ConnectionRefusedError)
    why = "nothing is listening there" if silent else str(error)
    local = isinstance(error, OSError) and url == local_database_url(settings.state_dir)
    hint = START_THE_LOCAL_STACK if local else ""
    return StackError(f"cannot connect to PostgreSQL at {where}: {why}.{hint}")


def lock_id(name: str) -> int:
    """The advisory lock id of ``name`` (stable across processes)."""
    return zlib.crc32(name.encode())


_AWAY = (
    OSError,  # refused, reset, or the socket file gone while the server restarts
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
)


def connection_lost(error: BaseException | None) -> bool:
    """Whether ``error`` is a connection refused, cut or not yet accepted (PostgreSQL
    restarting, say), not a statement or Choreo's code going wrong."""
    return isinstance(error, _AWAY)


class LostConnectionLines(logging.Filter):
    """A library's warning about a lost PostgreSQL connection as one line with the error, as
    :func:`log_loop_failure` writes the runtime's own: asyncpg's pool logs each failed attempt
    to restore its floor of connections, while PostgreSQL restarts, with a full traceback.
    Other records pass unchanged (a bug keeps its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno == logging.WARNING and connection_lost(error):
            record.msg = f"{record.getMessage()} ({_lost(error)})"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


def _lost(error: BaseException | None) -> str:
    """How a lost connection reads in a log line (the error's type and words, no traceback)."""
    return f"connection lost: {type(error).__name__}: {error}"


def log_loop_failure(logger: logging.Logger, message: str, *args: object) -> None:
    """Log the exception a loop that will try again is handling: one warning line for a lost
    connection (an outage the loop rides out), else an error with its traceback."""
    error = sys.exc_info()[1]
    if connection_lost(error):
        logger.warning(f"{message} (%s)", *args, _lost(error))
    else:
        logger.exception(message, *args)
