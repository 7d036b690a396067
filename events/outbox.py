"""The transactional outbox: messages staged in PostgreSQL, published to Kafka by a relay.

A delivery writes what a handler emits to its schema's outbox table inside the transaction
that records its effects (:func:`stage`); :class:`OutboxRelay` then publishes outbox rows to
Kafka in order and deletes them. A crash between publishing and deleting republishes, which
the consumers' inboxes absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from opentelemetry import trace

from events import tracing
from events.database import Connection, Database, lock_id
from events.errors import TransientError
from events.producer import EventProducer, OutgoingRecord

log = logging.getLogger("choreo.postgres")
_tracer = trace.get_tracer("choreo.events")
MAX_LINKS = 128  # the SDK's default limit of links per span


async def stage(conn: Connection, schema: str, records: Sequence[OutgoingRecord]) -> None:
    """Write records to the outbox inside the caller's transaction."""
    if not records:
        return
    await conn.executemany(
        f"INSERT INTO {schema}.outbox (topic, key, value, header_keys, header_values, event_type)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (
                r.topic,
                r.key,
                r.value,
                [k for k, _ in r.headers],
                [v for _, v in r.headers],
                r.event_type,
            )
            for r in records
        ],
    )


class OutboxRelay:
    """Publishes a schema's outbox to Kafka in insertion order, then deletes what was sent.

    One relay at a time per schema publishes (an advisory lock), so a second replica of a
    process cannot reorder an order's messages: replicas share the schema, hence the outbox,
    and whichever relay holds the lock publishes every replica's rows in id order. A relay
    that finds the lock taken tries again after ``contended_retry_s`` rather than its poll
    interval, since the holder may have read the outbox before this replica's rows committed.
    """

    def __init__(
        self,
        db: Database,
        schema: str,
        producer: EventProducer,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
        contended_retry_s: float = 0.05,
    ) -> None:
        self.db = db
        self.schema = schema
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.contended_retry_s = contended_retry_s
        self.published = 0
        self._contended = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """Publish now rather than at the next poll (called after a commit that staged rows)."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                while await self.flush() == self.batch_size:
                    pass
            except (OSError, asyncpg.PostgresError, KafkaError, TransientError) as exc:
                # A publish that failed rolled its delete back: the rows wait for the next try.
                log.warning("outbox relay of %s failed, retrying: %s", self.schema, exc)
            wait_s = self.contended_retry_s if self._contended else self.poll_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
        await self.flush()  # drain what the last deliveries staged

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def flush(self) -> int:
        """Publish one batch; returns how many rows it published."""
        # The relay's queries are housekeeping; its send span links each message's trace.
        with tracing.housekeeping():
            return await self._flush()

    async def _flush(self) -> int:
        # Three round trips: begin, one statement that takes the relay's lock and deletes the
        # batch (returning it), commit. The publish sits between the delete and the commit,
        # so a failed publish rolls the delete back and the rows wait for the next flush.
        async with self.db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "WITH relay AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($1) AS held),"
                f" batch AS (SELECT id FROM {self.schema}.outbox"
                " WHERE (SELECT held FROM relay) ORDER BY id LIMIT $2),"
                f" sent AS (DELETE FROM {self.schema}.outbox AS o USING batch"
                " WHERE o.id = batch.id"
                " RETURNING o.id, o.topic, o.key, o.value, o.header_keys, o.header_values,"
                " o.event_type)"
                " SELECT relay.held, sent.* FROM relay LEFT JOIN sent ON true ORDER BY sent.id",
                lock_id(f"relay:{self.schema}"),
                self.batch_size,
            )
            self._contended = not rows[0]["held"]
            rows = [row for row in rows if row["id"] is not None]
            if not rows:
                return 0
            records = [
                OutgoingRecord(
                    topic=row["topic"],
                    key=bytes(row["key"]),
                    value=bytes(row["value"]),
                    headers=tuple(
                        zip(row["header_keys"], map(bytes, row["header_values"]), strict=True)
                    ),
                    event_type=row["event_type"],
                )
                for row in rows
            ]
            # One send span for the batch, linked to each message's creation (its trace).
            links = [
                trace.Link(span.get_span_context())
                for r in records[:MAX_LINKS]
                for span in [trace.get_current_span(tracing.extract(r.headers))]
                if span.get_span_context().is_valid
            ]
            with _tracer.start_as_current_span(
                f"outbox {self.schema} send",
                kind=trace.SpanKind.PRODUCER,
                links=links,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.batch.message_count": len(records),
                },
            ):
                await self.producer.send_records(records)
        self.published += len(rows)
        return len(rows)


async def outbox_size(db: Database, schema: str) -> int:
    count: Any = await db.pool.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    return int(count)
