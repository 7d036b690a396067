"""The transactional outbox: messages staged in PostgreSQL, published to Kafka after commit.

A delivery writes what a handler emits to its schema's outbox table inside the transaction
that records its effects (:func:`stage`). Once that transaction has committed, the delivery
publishes the rows itself (:meth:`OutboxRelay.publish_committed`); the :class:`OutboxRelay`
publishes, in order, whatever is left: the rows of a publish that failed, of a process that
died between its commit and its publish, and the rows staged behind them.

A row published right after its commit is deleted by the process's next transaction, whose
first statement carries the delete (:class:`PublishedRows`): a delivery's, or the relay's next
poll. A delete of its own would cost a commit, hence a WAL flush, for every delivery.
A crash before that delete republishes, which the consumers' inboxes absorb.

The order of one key's messages (one saga's, on one partition) is kept by a fence: staging
tells whether an older row of one of its keys is still in the outbox. A key's writers are
serialized (a lane, the saga's lock), so an older row it cannot see was deleted, which happens
only after Kafka acknowledged it, and an older row its process knows it published (awaiting
its delete) was acknowledged too. When another one is still there, the new rows are left to
the relay, which publishes in id order; otherwise they can go at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from opentelemetry import context as otel_context
from opentelemetry import trace

from events import tracing
from events.database import Connection, Database, lock_id
from events.errors import TransientError
from events.producer import EventProducer, OutgoingRecord
from events.spans import RuntimeTracer

log = logging.getLogger("choreo.postgres")
_tracer = RuntimeTracer("choreo.events")
MAX_LINKS = 128  # the SDK's default limit of links per span


@dataclass(frozen=True, slots=True)
class Staged:
    """What :func:`stage` wrote: the rows' ids, their records, and whether an older row of one
    of their keys was still in the outbox (then only the relay may publish them)."""

    ids: Sequence[int] = ()
    records: Sequence[OutgoingRecord] = ()
    behind: bool = False


async def stage(
    conn: Connection,
    schema: str,
    records: Sequence[OutgoingRecord],
    published: Sequence[int] = (),
) -> Staged:
    """Write records to the outbox inside the caller's transaction, in one statement.

    ``published``: ids of rows known to be in Kafka though not yet deleted, which fence no one.
    """
    if not records:
        return Staged()
    # A record's headers are a slice of two flat arrays (PostgreSQL has no ragged arrays).
    firsts: list[int] = []
    lasts: list[int] = []
    header_keys: list[str] = []
    header_values: list[bytes] = []
    for r in records:
        firsts.append(len(header_keys) + 1)
        header_keys.extend(k for k, _ in r.headers)
        header_values.extend(v for _, v in r.headers)
        lasts.append(len(header_keys))
    row = await conn.fetchrow(
        "WITH staged AS ("
        f" INSERT INTO {schema}.outbox"
        " (topic, key, value, header_keys, header_values, event_type)"
        " SELECT m.topic, m.key, m.value, ($7::text[])[m.first:m.last],"
        " ($8::bytea[])[m.first:m.last], m.event_type"
        " FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::int[], $6::int[])"
        " WITH ORDINALITY AS m(topic, key, value, event_type, first, last, n)"
        " ORDER BY m.n RETURNING id)"
        # The statement's snapshot holds the older rows only: the fence (see the module docs).
        " SELECT (SELECT array_agg(id) FROM staged) AS ids,"
        f" EXISTS (SELECT 1 FROM {schema}.outbox WHERE key = ANY($2::bytea[])"
        " AND id <> ALL($9::bigint[])) AS behind",
        [r.topic for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [r.event_type for r in records],
        firsts,
        lasts,
        header_keys,
        header_values,
        published,
    )
    assert row is not None
    return Staged(ids=row["ids"], records=records, behind=row["behind"])


def delete_published(schema: str, parameter: int) -> str:
    """The ``DELETE`` of the rows whose ids are the ``bigint[]`` parameter ``$<parameter>``,
    for the ``WITH`` of a transaction's first statement: the rows :class:`PublishedRows` hands
    it."""
    return f"DELETE FROM {schema}.outbox WHERE id = ANY(${parameter}::bigint[])"


class PublishedRows:
    """Outbox rows a process published right after their commits, waiting to be deleted.

    The process's next transaction takes them (:meth:`claim`) and deletes them in its first
    statement, so their delete shares that transaction's commit. Until that commits they stay
    known here: the fence (:func:`stage`) and the relay pass over them, since Kafka has them.
    A transaction that rolls back hands its claim back for the next one.
    """

    def __init__(self) -> None:
        self._waiting: list[int] = []
        self._claimed: set[int] = set()

    def add(self, ids: Sequence[int]) -> None:
        self._waiting.extend(ids)

    def ids(self) -> list[int]:
        """Every row published and not yet deleted: waiting, or claimed by a transaction."""
        return [*self._waiting, *self._claimed]

    @contextlib.contextmanager
    def claim(self) -> Iterator[list[int]]:
        """The rows waiting, for one transaction to delete; wrap the transaction, commit
        included: if it raises, the rows wait for the next one."""
        ids, self._waiting = self._waiting, []
        self._claimed.update(ids)
        try:
            yield ids
        except BaseException:
            self._waiting.extend(ids)
            raise
        finally:
            self._claimed.difference_update(ids)


class OutboxRelay:
    """Publishes a schema's outbox to Kafka: what deliveries just committed
    (:meth:`publish_committed`), and in insertion order whatever they left (:meth:`run`).

    One relay at a time per schema publishes what is left (an advisory lock), so a second
    replica of a process cannot reorder an order's messages: replicas share the schema, hence
    the outbox, and whichever relay holds the lock publishes every replica's rows in id order.
    A relay that finds the lock taken tries again after ``contended_retry_s`` rather than its
    poll interval, since the holder may have read the outbox before this replica's rows
    committed.

    A poll that nothing woke takes only the rows the previous poll saw already: a row its
    delivery is publishing right now is not sent twice.
    With ``publish_after_commit`` off, every row waits for the relay, woken by the commit.

    Each poll also deletes the rows :attr:`published_rows` holds, so none waits longer than a
    poll when no delivery comes to delete it.
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
        publish_after_commit: bool = True,
        send_spans: bool = False,
    ) -> None:
        self.db = db
        self.schema = schema
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.contended_retry_s = contended_retry_s
        self.publish_after_commit = publish_after_commit
        self.send_spans = send_spans
        self.published = 0
        """Messages published: by the relay and right after their commits."""
        self.published_after_commit = 0
        """Of :attr:`published`, those their deliveries published right after commit."""
        self.left_to_relay = 0
        """Staged batches a delivery left to the relay: fenced, or their publish failed."""
        self.published_rows = PublishedRows()
        """Rows published right after their commits, for the next transaction to delete."""
        self._newest_seen: int | None = None
        self._contended = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """Publish now rather than at the next poll (called after a commit that staged rows)."""
        self._wake.set()

    async def publish_committed(self, staged: Staged) -> None:
        """Publish rows a delivery has just committed; the next transaction deletes them.

        Rows behind an older row of their key, and rows whose publish fails, are left to the
        relay (woken), which publishes them in order.
        """
        if not staged.ids:
            return
        if staged.behind or not self.publish_after_commit:
            self.left_to_relay += 1
            self.wake()
            return
        try:
            await self._send(staged.records)
        except (OSError, KafkaError, TransientError) as exc:
            log.warning(
                "publishing after commit in %s failed, the relay retries: %s", self.schema, exc
            )
            self.left_to_relay += 1
            self.wake()
            return
        self.published += len(staged.ids)
        self.published_after_commit += len(staged.ids)
        self.published_rows.add(staged.ids)

    async def run(self) -> None:
        everything = True  # the first poll takes what a crash left
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                while await self.flush(everything=everything) == self.batch_size:
                    pass
            except (OSError, asyncpg.PostgresError, KafkaError, TransientError) as exc:
                # A publish that failed rolled its delete back: the rows wait for the next try.
                log.warning("outbox relay of %s failed, retrying: %s", self.schema, exc)
            wait_s = self.contended_retry_s if self._contended else self.poll_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
            everything = self._wake.is_set() or self._contended or not self.publish_after_commit
        await self.flush()  # drain what the last deliveries staged

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def flush(self, *, everything: bool = True) -> int:
        """Publish one batch (only rows an earlier flush saw, unless ``everything``); returns
        how many rows it published."""
        # The relay's queries are housekeeping; its send span (opt-in) links each message's trace.
        with tracing.housekeeping(), self.published_rows.claim() as gone:
            return await self._flush(everything or self._newest_seen is None, gone)

    async def _flush(self, everything: bool, gone: Sequence[int]) -> int:
        # Three round trips: begin, one statement that takes the relay's lock and deletes the
        # batch (returning it), commit. The publish sits between the delete and the commit,
        # so a failed publish rolls the delete back and the rows wait for the next flush.
        # The statement also deletes the rows deliveries published (``gone``, whatever the
        # lock).
        async with self.db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "WITH relay AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($1) AS held),"
                f" gone AS ({delete_published(self.schema, 4)}),"
                f" batch AS (SELECT id FROM {self.schema}.outbox"
                " WHERE (SELECT held FROM relay) AND ($3::bigint IS NULL OR id <= $3)"
                " AND id <> ALL($5::bigint[]) ORDER BY id LIMIT $2),"
                f" sent AS (DELETE FROM {self.schema}.outbox AS o USING batch"
                " WHERE o.id = batch.id"
                " RETURNING o.id, o.topic, o.key, o.value, o.header_keys, o.header_values,"
                " o.event_type)"
                f" SELECT relay.held, (SELECT max(id) FROM {self.schema}.outbox) AS newest,"
                " sent.* FROM relay LEFT JOIN sent ON true ORDER BY sent.id",
                lock_id(f"relay:{self.schema}"),
                self.batch_size,
                None if everything else self._newest_seen,
                gone,
                self.published_rows.ids(),
            )
            self._contended = not rows[0]["held"]
            self._newest_seen = rows[0]["newest"] or 0
            rows = [row for row in rows if row["id"] is not None]
            if not rows:
                return 0
            await self._send(
                [
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
            )
        self.published += len(rows)
        return len(rows)

    async def _send(self, records: Sequence[OutgoingRecord]) -> None:
        """Send records; with ``send_spans``, under one send span of a trace of its own, linked
        to each message's creation (its order's trace)."""
        if not self.send_spans or not tracing.active():
            await self.producer.send_records(records)
            return
        links = [
            trace.Link(span.get_span_context())
            for r in records[:MAX_LINKS]
            for span in [trace.get_current_span(tracing.extract(r.headers))]
            if span.get_span_context().is_valid
        ]
        with _tracer.start_as_current_span(
            f"outbox {self.schema} send",
            context=otel_context.Context(),
            kind=trace.SpanKind.PRODUCER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.batch.message_count": len(records),
            },
        ):
            await self.producer.send_records(records)


async def outbox_size(db: Database, schema: str) -> int:
    count: Any = await db.pool.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    return int(count)
