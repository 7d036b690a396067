"""Circuit breakers in PostgreSQL: each process publishes its own, tools read them all, and
tests or demos inject provider faults.

Processes are separate OS processes, so their breakers are rows in the deployment's runtime
schema (``<prefix>_runtime``, :func:`runtime_schema`): the runtime's status, not any process's
state, so it stays out of the process schemas that a replay rebuilds from the log.
``circuit_breakers`` has a row per process instance (host and pid) and provider, written by
the process's :class:`BreakerBoard` at once on every transition and every
``breaker_publish_interval_ms`` otherwise, and deleted when the process stops.
:func:`read_breakers` reads them (``choreo breakers``, the API's ``/breakers``); a row not
refreshed for :data:`STALE_AFTER_S` belongs to a process that died without stopping.

``provider_faults`` is how to make a provider fail while the processes run
(:func:`inject_fault`, ``choreo faults inject``): each board reads it on every round and sets
the failure rate in force on its provider's guard
(:attr:`~events.breakers.ProviderGuard.fault_rate`) until the row's ``until``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from events import tracing
from events.breakers import ProviderGuards
from events.database import Database, lock_id, log_loop_failure, schema_name
from events.settings import Settings

log = logging.getLogger("choreo.breakers")

STALE_AFTER_S = 15.0
"""A row older than this (or three publish intervals, if longer) belongs to a process that
stopped publishing (killed)."""

FORGET_AFTER_S = 300.0
"""A process deletes rows of other instances older than this (they died long ago)."""

DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.circuit_breakers (
    process     text             NOT NULL,
    instance    text             NOT NULL,
    provider    text             NOT NULL,
    state       text             NOT NULL,
    since       timestamptz      NOT NULL,
    failures    int              NOT NULL,
    opened      int              NOT NULL,
    deferred    bigint           NOT NULL,
    in_use      int              NOT NULL,
    concurrency int              NOT NULL,
    fault_rate  double precision NOT NULL,
    last_error  text,
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (process, instance, provider)
);
CREATE TABLE IF NOT EXISTS {schema}.provider_faults (
    provider     text             PRIMARY KEY,
    failure_rate double precision NOT NULL CHECK (failure_rate BETWEEN 0 AND 1),
    until        timestamptz      NOT NULL,
    set_at       timestamptz      NOT NULL DEFAULT now()
);
"""
"""The runtime schema's tables; ``{schema}`` stands for it."""


def runtime_schema(settings: Settings) -> str:
    """The deployment's runtime schema: ``<prefix>_runtime``."""
    return schema_name(settings, "runtime")


async def migrate(db: Database, settings: Settings) -> str:
    """Create the runtime schema's tables once (concurrent starts serialize); its name."""
    async with db.pool.acquire() as conn, conn.transaction():
        return await create_tables(conn, settings)


async def create_tables(conn: asyncpg.Connection, settings: Settings) -> str:
    """The runtime schema's tables, made if missing (in the caller's transaction); its name.

    Nothing is run when they exist: `IF NOT EXISTS` still needs CREATE on the database or the
    schema, which a process's own role lacks (the administrator makes them: choreo/roles).
    """
    schema = runtime_schema(settings)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id(f"migrate:{schema}"))
    missing = await conn.fetchval(
        "SELECT to_regclass($1) IS NULL OR to_regclass($2) IS NULL",
        f"{schema}.circuit_breakers",
        f"{schema}.provider_faults",
    )
    if missing:
        await conn.execute(DDL.format(schema=schema))
    return schema


def instance_name() -> str:
    """This process's instance: ``host:pid`` (each replica of a process has its own rows)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class BreakerBoard:
    """Publishes one process's breakers and applies the faults injected for its providers.

    Lifecycle: ``await start()`` (creates the tables), then :meth:`run` until stopped.

    Args:
        db: the process's database.
        settings: names the deployment (its runtime schema).
        process: the process's name.
        guards: its providers' guards.
    """

    def __init__(
        self, db: Database, settings: Settings, process: str, guards: ProviderGuards
    ) -> None:
        self.db = db
        self.settings = settings
        self.schema = runtime_schema(settings)
        self.process = process
        self.guards = guards
        self.interval_s = settings.breaker_publish_interval_ms / 1000
        self.instance = instance_name()

    async def start(self) -> None:
        """Create the runtime schema's tables if they are missing."""
        await migrate(self.db, self.settings)

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish and read faults until ``stopping`` is set; then delete this instance's rows."""
        try:
            while not stopping.is_set():
                self.guards.changed.clear()
                try:
                    await self.publish()
                    await self.apply_faults()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log_loop_failure(log, "publishing the circuit breakers failed; trying again")
                changed = asyncio.create_task(self.guards.changed.wait())
                stop = asyncio.create_task(stopping.wait())
                await asyncio.wait(
                    [changed, stop], timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
                stop.cancel()
        finally:
            with contextlib.suppress(Exception):
                await self.withdraw()

    async def publish(self) -> None:
        """Write this instance's row of every provider; forget long-dead instances' rows."""
        rows = [
            [
                self.process, self.instance, g.provider, str(g.breaker.state), g.breaker.since,
                g.breaker.failures, g.breaker.opened, g.deferred, g.bulkhead.in_use,
                g.bulkhead.limit, g.fault_rate, g.breaker.last_error,
            ]
            for g in self.guards
        ]  # fmt: skip
        with tracing.housekeeping():  # every second, in every process: no traces
            async with self.db.pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    f"INSERT INTO {self.schema}.circuit_breakers (process, instance, provider,"
                    " state, since, failures, opened, deferred, in_use, concurrency,"
                    " fault_rate, last_error, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())"
                    " ON CONFLICT (process, instance, provider) DO UPDATE SET"
                    " state = excluded.state,"
                    " since = excluded.since, failures = excluded.failures,"
                    " opened = excluded.opened, deferred = excluded.deferred,"
                    " in_use = excluded.in_use, concurrency = excluded.concurrency,"
                    " fault_rate = excluded.fault_rate, last_error = excluded.last_error,"
                    " updated_at = now()",
                    rows,
                )
                await conn.execute(
                    f"DELETE FROM {self.schema}.circuit_breakers WHERE process = $1"
                    " AND instance <> $2 AND updated_at < now() - make_interval(secs => $3)",
                    self.process,
                    self.instance,
                    FORGET_AFTER_S,
                )

    async def apply_faults(self) -> None:
        """Set each guard's injected failure rate from ``provider_faults`` (0 when none is
        in force); log when one starts or ends."""
        with tracing.housekeeping():
            rows = await self.db.pool.fetch(
                f"SELECT provider, failure_rate FROM {self.schema}.provider_faults"
                " WHERE until > now() AND provider = any($1::text[])",
                [guard.provider for guard in self.guards],
            )
        rates = {row["provider"]: float(row["failure_rate"]) for row in rows}
        for guard in self.guards:
            rate = rates.get(guard.provider, 0.0)
            if rate != guard.fault_rate:
                log.warning(
                    "provider %s: injected failure rate %g (was %g)",
                    guard.provider,
                    rate,
                    guard.fault_rate,
                )
                guard.fault_rate = rate

    async def withdraw(self) -> None:
        """Delete this instance's rows (the process stops)."""
        with tracing.housekeeping():
            await self.db.pool.execute(
                f"DELETE FROM {self.schema}.circuit_breakers WHERE process = $1 AND instance = $2",
                self.process,
                self.instance,
            )


@dataclass(frozen=True, slots=True)
class BreakerRow:
    """One process instance's breaker of one provider, as published."""

    process: str
    instance: str
    provider: str
    state: str
    since: datetime
    failures: int
    opened: int
    deferred: int
    in_use: int
    concurrency: int
    fault_rate: float
    last_error: str | None
    updated_at: datetime
    stale: bool
    """Not refreshed for :data:`STALE_AFTER_S`: its process died without stopping."""

    def to_json(self) -> dict[str, Any]:
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((f.name, getattr(self, f.name)) for f in fields(self))
        }


async def _ready(db: Database, settings: Settings) -> str | None:
    """The runtime schema, if a process has created its tables yet."""
    schema = runtime_schema(settings)
    found = await db.pool.fetchval("SELECT to_regclass($1)", f"{schema}.circuit_breakers")
    return schema if found is not None else None


async def read_breakers(db: Database, settings: Settings) -> list[BreakerRow]:
    """Every published breaker of the deployment ``settings`` names, by process and provider."""
    schema = await _ready(db, settings)
    if schema is None:
        return []
    stale_after_s = max(STALE_AFTER_S, 3 * settings.breaker_publish_interval_ms / 1000)
    rows = await db.pool.fetch(
        f"SELECT *, updated_at < now() - make_interval(secs => $1) AS stale"
        f" FROM {schema}.circuit_breakers ORDER BY process, provider, instance",
        stale_after_s,
    )
    return [BreakerRow(**dict(row)) for row in rows]


async def inject_fault(
    db: Database, settings: Settings, provider: str, failure_rate: float, duration_s: float
) -> list[str]:
    """Make calls to ``provider`` fail at ``failure_rate`` for ``duration_s`` from now, in
    every process calling it (each picks it up within its publish interval). Returns the
    running processes that call it; raises ``LookupError`` when there are none."""
    calling = sorted(
        {row.process for row in await read_breakers(db, settings)
         if row.provider == provider and not row.stale}
    )  # fmt: skip
    if not calling:
        raise LookupError(f"no running process calls a provider named {provider!r}")
    await db.pool.execute(
        f"INSERT INTO {runtime_schema(settings)}.provider_faults (provider, failure_rate, until)"
        " VALUES ($1, $2, now() + make_interval(secs => $3))"
        " ON CONFLICT (provider) DO UPDATE SET failure_rate = excluded.failure_rate,"
        " until = excluded.until, set_at = now()",
        provider,
        failure_rate,
        duration_s,
    )
    return calling


async def clear_faults(db: Database, settings: Settings, provider: str | None = None) -> int:
    """End the injected faults of ``provider`` (all when None); how many were in force."""
    schema = await _ready(db, settings)
    if schema is None:
        return 0
    in_force: list[Any] = await db.pool.fetch(
        f"DELETE FROM {schema}.provider_faults WHERE ($1::text IS NULL OR provider = $1)"
        " RETURNING until > now() AS in_force",
        provider,
    )
    return sum(1 for row in in_force if row["in_force"])
