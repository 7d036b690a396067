"""The PostgreSQL retry queue: records whose handler failed transiently, waiting to be redone.

A record parked here has its offset committed, so its partition moves on to other orders;
the consumer's retry loop (:func:`events.retries.redeliver_parked`) redelivers it when due,
and the inbox makes a redelivery after a crash harmless. The table is part of every
transactional process's schema (:func:`events.database.runtime_ddl`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord

from events import tracing
from events.database import Database


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A consumed record waiting in the retry queue for its next attempt."""

    id: int
    record: ConsumerRecord
    attempts: int
    last_error: str
    due_at: datetime


class PostgresRetryQueue:
    """Non-blocking retries: a record whose handler failed transiently is parked here with a
    due time, its offset is committed, and the partition moves on to other orders. The
    consumer's retry loop redelivers it when due (the inbox makes a redelivery after a crash
    harmless). Replicas of a process share the queue; :meth:`due` hands each record to one.

    Args:
        db: the process's database.
        schema: the process's schema, which holds the queue.
        lease_s: how long a claimed record stays with the replica that claimed it before
            another may claim it (an attempt that outlives it may run twice; the inbox keeps
            its effect single).
    """

    def __init__(self, db: Database, schema: str, *, lease_s: float = 10.0) -> None:
        self.db = db
        self.schema = schema
        self.lease_s = lease_s
        self._parked = asyncio.Event()

    async def park(
        self, consumer: str, record: ConsumerRecord, attempts: int, delay_s: float, error: str
    ) -> None:
        headers = list(record.headers or ())
        await self.db.pool.execute(
            f'INSERT INTO {self.schema}.retry_queue (consumer, topic, partition, "offset", key,'
            " value, header_keys, header_values, attempts, due_at, last_error)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
            " now() + make_interval(secs => $10), $11)"
            ' ON CONFLICT (consumer, topic, partition, "offset") DO UPDATE SET'
            " attempts = excluded.attempts, due_at = excluded.due_at,"
            " last_error = excluded.last_error",
            consumer,
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            [k for k, _ in headers],
            [v for _, v in headers],
            attempts,
            delay_s,
            error[:2000],
        )
        self._parked.set()

    async def due(self, consumer: str, limit: int = 100) -> list[ParkedRecord]:
        """Claim up to ``limit`` records of ``consumer`` that are due, earliest first.

        Replicas of a process share its schema, hence its retry queue, and each polls it: a
        record redelivered by two of them at once would be attempted twice (the inbox keeps
        the effect single, not the provider call or the attempt count). So claiming is one
        statement that takes due rows no one else is claiming (``FOR UPDATE SKIP LOCKED``) and
        moves their due time ``lease_s`` on: the other replicas' polls no longer see them. The
        attempt's end deletes the row, or parks it again with its own due time; a process that
        dies mid-attempt leaves the row to be claimed again when the lease runs out (claims a
        pass did not attempt go back at once: :meth:`release`).
        """
        with tracing.housekeeping():  # polled all the time; the redelivery is traced
            rows = await self.db.pool.fetch(
                f"WITH claimed AS (SELECT id, due_at FROM {self.schema}.retry_queue"
                " WHERE consumer = $1 AND due_at <= now()"
                " ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
                f" UPDATE {self.schema}.retry_queue AS q"
                " SET due_at = now() + make_interval(secs => $3)"
                " FROM claimed WHERE q.id = claimed.id"
                " RETURNING q.*, claimed.due_at AS was_due",
                consumer,
                limit,
                self.lease_s,
            )
        rows = sorted(rows, key=lambda row: (row["was_due"], row["id"]))
        return [
            ParkedRecord(
                id=row["id"],
                record=ConsumerRecord(
                    topic=row["topic"],
                    partition=row["partition"],
                    offset=row["offset"],
                    timestamp=0,
                    timestamp_type=0,
                    key=None if row["key"] is None else bytes(row["key"]),
                    value=None if row["value"] is None else bytes(row["value"]),
                    checksum=None,
                    serialized_key_size=-1,
                    serialized_value_size=-1,
                    headers=tuple(
                        zip(row["header_keys"], map(bytes, row["header_values"]), strict=True)
                    ),
                ),
                attempts=row["attempts"],
                last_error=row["last_error"],
                due_at=row["due_at"],
            )
            for row in rows
        ]

    async def until_due(self, consumer: str, longest_s: float, stopping: asyncio.Event) -> None:
        """Wait while none of ``consumer``'s records is due: until the earliest one's due
        time, a record this process parks meanwhile, ``stopping``, or ``longest_s``."""
        # Cleared before the query: a park after it wakes the wait, one before it is seen.
        self._parked.clear()
        with tracing.housekeeping():
            due_in = await self.db.pool.fetchval(
                f"SELECT extract(epoch FROM min(due_at) - now()) FROM {self.schema}.retry_queue"
                " WHERE consumer = $1",
                consumer,
            )
        wait_s = longest_s if due_in is None else min(longest_s, max(0.0, float(due_in)))
        if wait_s <= 0:
            return
        waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._parked.wait())]
        try:
            await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def release(self, parked: Sequence[ParkedRecord]) -> None:
        """Hand claimed records back at once, their attempts not run (a stop, or a failure
        earlier in the pass); rows parked again since stay as they are."""
        if not parked:
            return
        await self.db.pool.execute(
            f"UPDATE {self.schema}.retry_queue AS q SET due_at = now()"
            " FROM unnest($1::bigint[], $2::int[]) AS c(id, attempts)"
            " WHERE q.id = c.id AND q.attempts = c.attempts",
            [p.id for p in parked],
            [p.attempts for p in parked],
        )

    async def done_unless_reparked(self, parked: ParkedRecord) -> None:
        """Remove the row of an attempt that finished; a row parked again since stays: it has
        more attempts, or a later due time (a deferral keeps the attempts)."""
        await self.db.pool.execute(
            f"DELETE FROM {self.schema}.retry_queue"
            " WHERE id = $1 AND attempts = $2 AND due_at = $3",
            parked.id,
            parked.attempts,
            parked.due_at,
        )

    async def size(self, consumer: str | None = None) -> int:
        count: Any = await self.db.pool.fetchval(
            f"SELECT count(*) FROM {self.schema}.retry_queue"
            " WHERE $1::text IS NULL OR consumer = $1",
            consumer,
        )
        return int(count)
