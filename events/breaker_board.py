"""Circuit breakers in PostgreSQL: each process publishes its own, tools read them all, and
tests or demos inject provider faults.

Processes are separate OS processes, so a process's breakers are rows in its own schema:
``circuit_breakers``, one per instance (host and pid) and provider, written by the process's
:class:`BreakerBoard` at once on every transition and every ``breaker_publish_interval_ms``
otherwise, and deleted when the process stops. :func:`read_breakers` reads every process's
rows of a deployment (``choreo breakers``, the API's ``/breakers``); a row not refreshed for
:data:`STALE_AFTER_S` belongs to a process that died without stopping.

``provider_faults``, beside it, is how to make a provider fail while the processes run
(:func:`inject_fault`, ``choreo faults inject``): the board reads it on every round and sets the
failure rate in force on the provider's guard (:attr:`~events.breakers.ProviderGuard.fault_rate`)
until the row's ``until``.
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

from events import tracing
from events.breakers import ProviderGuards
from events.database import Database, schema_name
from events.settings import Settings

log = logging.getLogger("choreo.breakers")

STALE_AFTER_S = 15.0
"""A row older than this belongs to a process that stopped publishing (killed)."""

FORGET_AFTER_S = 300.0
"""A process deletes rows of other instances older than this (they died long ago)."""

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.circuit_breakers (
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
    PRIMARY KEY (instance, provider)
);
CREATE TABLE IF NOT EXISTS {schema}.provider_faults (
    provider     text             PRIMARY KEY,
    failure_rate double precision NOT NULL CHECK (failure_rate BETWEEN 0 AND 1),
    until        timestamptz      NOT NULL,
    set_at       timestamptz      NOT NULL DEFAULT now()
);
"""
"""The tables of a process whose handlers call providers; ``{schema}`` is its schema."""


def instance_name() -> str:
    """This process's instance: ``host:pid`` (replicas of a process share its schema)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class BreakerBoard:
    """Publishes one process's breakers to its schema and applies the faults injected there.

    Args:
        db: the process's database.
        schema: the process's schema.
        guards: its providers' guards.
        interval_s: how often it publishes when nothing changes (and reads the faults).
    """

    def __init__(
        self, db: Database, schema: str, guards: ProviderGuards, interval_s: float
    ) -> None:
        self.db = db
        self.schema = schema
        self.guards = guards
        self.interval_s = interval_s
        self.instance = instance_name()

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
                    log.exception("publishing the circuit breakers failed; trying again")
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
                self.instance, g.provider, str(g.breaker.state), g.breaker.since,
                g.breaker.failures, g.breaker.opened, g.deferred, g.bulkhead.in_use,
                g.bulkhead.limit, g.fault_rate, g.breaker.last_error,
            ]
            for g in self.guards
        ]  # fmt: skip
        with tracing.housekeeping():  # every second, in every process: no traces
            async with self.db.pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    f"INSERT INTO {self.schema}.circuit_breakers (instance, provider, state,"
                    " since, failures, opened, deferred, in_use, concurrency, fault_rate,"
                    " last_error, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())"
                    " ON CONFLICT (instance, provider) DO UPDATE SET state = excluded.state,"
                    " since = excluded.since, failures = excluded.failures,"
                    " opened = excluded.opened, deferred = excluded.deferred,"
                    " in_use = excluded.in_use, concurrency = excluded.concurrency,"
                    " fault_rate = excluded.fault_rate, last_error = excluded.last_error,"
                    " updated_at = now()",
                    rows,
                )
                await conn.execute(
                    f"DELETE FROM {self.schema}.circuit_breakers WHERE instance <> $1"
                    " AND updated_at < now() - make_interval(secs => $2)",
                    self.instance,
                    FORGET_AFTER_S,
                )

    async def apply_faults(self) -> None:
        """Set each guard's injected failure rate from ``provider_faults`` (0 when none is
        in force); log when one starts or ends."""
        with tracing.housekeeping():
            rows = await self.db.pool.fetch(
                f"SELECT provider, failure_rate FROM {self.schema}.provider_faults"
                " WHERE until > now()"
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
                f"DELETE FROM {self.schema}.circuit_breakers WHERE instance = $1", self.instance
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


async def _schemas(db: Database, settings: Settings, table: str) -> dict[str, str]:
    """The deployment's schemas that have ``table``, with the process each belongs to."""
    prefix = schema_name(settings, "")
    rows = await db.pool.fetch(
        "SELECT table_schema FROM information_schema.tables"
        " WHERE table_name = $1 AND starts_with(table_schema, $2)",
        table,
        f"{prefix}_",
    )
    return {row["table_schema"]: row["table_schema"][len(prefix) + 1 :] for row in rows}


async def read_breakers(db: Database, settings: Settings) -> list[BreakerRow]:
    """Every published breaker of the deployment ``settings`` names, by process and provider."""
    found: list[BreakerRow] = []
    for schema, process in sorted((await _schemas(db, settings, "circuit_breakers")).items()):
        rows = await db.pool.fetch(
            f"SELECT *, updated_at < now() - make_interval(secs => $1) AS stale"
            f" FROM {schema}.circuit_breakers ORDER BY provider, instance",
            STALE_AFTER_S,
        )
        found.extend(BreakerRow(process=process, **dict(row)) for row in rows)
    return found


async def inject_fault(
    db: Database, settings: Settings, provider: str, failure_rate: float, duration_s: float
) -> list[str]:
    """Make calls to ``provider`` fail at ``failure_rate`` for ``duration_s`` from now, in
    every process that published a breaker for it (within a publish interval). Returns those
    processes; raises ``LookupError`` when there are none."""
    processes = []
    for schema, process in sorted((await _schemas(db, settings, "provider_faults")).items()):
        async with db.pool.acquire() as conn, conn.transaction():
            calls = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.circuit_breakers WHERE provider = $1", provider
            )
            if not calls:
                continue
            await conn.execute(
                f"INSERT INTO {schema}.provider_faults (provider, failure_rate, until)"
                " VALUES ($1, $2, now() + make_interval(secs => $3))"
                " ON CONFLICT (provider) DO UPDATE SET failure_rate = excluded.failure_rate,"
                " until = excluded.until, set_at = now()",
                provider,
                failure_rate,
                duration_s,
            )
        processes.append(process)
    if not processes:
        raise LookupError(f"no running process calls a provider named {provider!r}")
    return processes


async def clear_faults(db: Database, settings: Settings, provider: str | None = None) -> int:
    """End the injected faults of ``provider`` (all when None); how many were in force."""
    cleared = 0
    for schema in sorted(await _schemas(db, settings, "provider_faults")):
        status = await db.pool.execute(
            f"DELETE FROM {schema}.provider_faults WHERE until > now()"
            " AND ($1::text IS NULL OR provider = $1)",
            provider,
        )
        cleared += int(status.split()[-1])
    return cleared
