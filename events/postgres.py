"""Exactly-once effects with PostgreSQL: dedupe inbox, transactional outbox and its relay.

For a process whose handlers change state, :class:`TransactionalDelivery` runs each message in
one PostgreSQL transaction that (1) records ``(consumer, event_id)`` in the inbox — a message
seen before is skipped, so redelivery and replay have no second effect —, (2) runs the handler
with a context bound to that transaction, and (3) writes the messages it returns to the outbox.
Either all three commit or none does. :class:`OutboxRelay` then publishes outbox rows to Kafka
in order and deletes them; a crash between publishing and deleting republishes, which the
consumers' inboxes absorb.

A delivery processes its message at one instant (:func:`events.model.frozen_clock`): the inbox
row, the handler's records and the emitted envelopes share it. :class:`ReplayDelivery` runs the
same transaction without staging anything, for rebuilding a process's state from the log
(:mod:`choreo.replay`).

Every process keeps these tables in its own schema (``<prefix>_<service>``), next to its own
state tables: no process reads another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import asyncpg
from aiokafka import ConsumerRecord
from opentelemetry import trace

from events import tracing
from events.codec import Codec
from events.errors import StackError, TransientError
from events.model import Event, Message, frozen_clock, utc_now
from events.producer import EventProducer, OutgoingRecord, to_record
from events.runtime import HandlerSpec, caused_messages
from events.settings import Settings

log = logging.getLogger("choreo.postgres")
_tracer = trace.get_tracer("choreo.events")
MAX_LINKS = 128  # the SDK's default limit of links per span

C = TypeVar("C")
Connection: TypeAlias = asyncpg.Connection


def schema_name(settings: Settings, service: str) -> str:
    """The PostgreSQL schema of one service: the topic prefix made an identifier, + its name."""
    prefix = "".join(ch if ch.isalnum() else "_" for ch in settings.topic_prefix.lower())
    return f"{prefix}{service}".strip("_")


def runtime_ddl(schema: str) -> str:
    """Tables every transactional process has: the inbox and the outbox."""
    return f"""
    CREATE SCHEMA IF NOT EXISTS {schema};
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
    """


class Database:
    """A connection pool with the process's lifecycle (``start``/idempotent ``stop``)."""

    def __init__(self, settings: Settings, *, max_size: int = 10) -> None:
        self.settings = settings
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StackError("the database is not started")
        return self._pool

    async def start(self) -> None:
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
            raise StackError(f"cannot connect to PostgreSQL: {exc}") from exc

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Database:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def migrate(self, schema: str, *ddl: str) -> None:
        """Create the runtime tables and the given DDL (``{schema}`` is substituted) once.

        Concurrent starts of processes sharing a schema serialize on an advisory lock.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_id(f"migrate:{schema}"))
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


def _lock_id(name: str) -> int:
    return zlib.crc32(name.encode())


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
    process cannot reorder an order's messages.
    """

    def __init__(
        self,
        db: Database,
        schema: str,
        producer: EventProducer,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.db = db
        self.schema = schema
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.published = 0
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
            except (OSError, asyncpg.PostgresError, TransientError) as exc:
                log.warning("outbox relay of %s failed, retrying: %s", self.schema, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
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
        async with self.db.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", _lock_id(f"relay:{self.schema}")
            )
            if not locked:
                return 0
            rows = await conn.fetch(
                f"SELECT id, topic, key, value, header_keys, header_values, event_type"
                f" FROM {self.schema}.outbox ORDER BY id LIMIT $1",
                self.batch_size,
            )
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
            await conn.execute(
                f"DELETE FROM {self.schema}.outbox WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
        self.published += len(rows)
        return len(rows)


class TransactionalDelivery(Generic[C]):
    """Inbox check, handler and outbox in one PostgreSQL transaction (see the module docs).

    ``context_factory`` builds the handler's context (e.g. the service's state store) bound to
    the transaction's connection.
    """

    def __init__(
        self,
        *,
        db: Database,
        schema: str,
        context_factory: Callable[[Connection], C],
        producer_name: str,
        codec: Codec,
        settings: Settings,
        relay: OutboxRelay | None = None,
    ) -> None:
        self.db = db
        self.schema = schema
        self.context_factory = context_factory
        self.producer_name = producer_name
        self.codec = codec
        self.settings = settings
        self.relay = relay
        self.duplicates = 0

    @contextlib.asynccontextmanager
    async def batch(
        self, consumer: str, messages: Sequence[Message[Event]]
    ) -> AsyncIterator[DeliveryBatch[C]]:
        """Deliver many messages in one transaction: ``async with delivery.batch(consumer,
        messages) as batch``, then ``await batch.deliver(message, handler)`` for each message
        in order.

        Every inbox row is written up front in one statement (which also tells the
        duplicates), and everything emitted is staged in one statement at the end, before the
        one commit: a poll costs a handful of round trips instead of several per message. The
        messages of a batch share one instant. An exception rolls all of it back.
        """
        # The batch's own statements (begin, inbox, outbox, commit) belong to no one
        # message's trace, so they are not traced; each handler's statements are, under its
        # message's process span.
        with frozen_clock() as instant:
            async with self.db.pool.acquire() as conn, untraced_transaction(conn):
                with tracing.housekeeping():
                    rows = await conn.fetch(
                        f"INSERT INTO {self.schema}.inbox"
                        " (consumer, event_id, event_type, processed_at)"
                        " SELECT $1, m.event_id, m.event_type, $4"
                        " FROM unnest($2::uuid[], $3::text[]) AS m(event_id, event_type)"
                        " ON CONFLICT DO NOTHING RETURNING event_id",
                        consumer,
                        [m.envelope.event_id for m in messages],
                        [m.envelope.event_type for m in messages],
                        instant,
                    )
                fresh = {row["event_id"] for row in rows}
                session = DeliveryBatch(self, conn, consumer, fresh)
                yield session
                with tracing.housekeeping():
                    await stage(conn, self.schema, session.records)
        self.duplicates += session.duplicates
        if session.records and self.relay is not None:
            self.relay.wake()

    async def deliver(
        self, consumer: str, message: Message[Event], handler: HandlerSpec
    ) -> bool | None:
        # One instant for the whole message: the inbox row, what the handler records and the
        # envelopes of what it emits carry the same time, which a replay reads back from the
        # log (the emitted envelopes' occurred_at) to compute the same rows again.
        with frozen_clock():
            async with self.db.pool.acquire() as conn, conn.transaction():
                fresh = await conn.fetchval(
                    f"INSERT INTO {self.schema}.inbox"
                    " (consumer, event_id, event_type, processed_at) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT DO NOTHING RETURNING true",
                    consumer,
                    message.envelope.event_id,
                    message.envelope.event_type,
                    utc_now(),
                )
                if not fresh:
                    self.duplicates += 1
                    log.debug("%s: %s already processed", consumer, message.envelope.event_id)
                    return False
                outputs = await self.handle(conn, message, handler)
                staged = await self.emit(conn, message, outputs)
        if staged and self.relay is not None:
            self.relay.wake()
        return True

    async def handle(
        self, conn: Connection, message: Message[Event], handler: HandlerSpec
    ) -> list[Event]:
        """Run the handler on the transaction's connection; returns what it emits."""
        with _tracer.start_as_current_span(
            f"handle {message.envelope.event_type}",
            attributes={"choreo.handler": handler.name, "choreo.order_id": message.order_id},
        ):
            return list(await handler.func(message, self.context_factory(conn)) or ())

    def outgoing(self, cause: Message[Event], outputs: Sequence[Event]) -> list[OutgoingRecord]:
        """The records to stage for what a handler returned. Raising rolls the delivery back."""
        return [
            to_record(m, self.codec, self.settings)
            for m in caused_messages(cause, outputs, self.producer_name)
        ]

    async def emit(self, conn: Connection, cause: Message[Event], outputs: Sequence[Event]) -> int:
        """Stage what the handler returned in the outbox, inside the delivery's transaction.

        Returns how many messages were staged. Raising rolls the whole delivery back.
        """
        records = self.outgoing(cause, outputs)
        await stage(conn, self.schema, records)
        return len(records)


class DeliveryBatch(Generic[C]):
    """The session of one :meth:`TransactionalDelivery.batch`: delivers messages in turn."""

    def __init__(
        self, delivery: TransactionalDelivery[C], conn: Connection, consumer: str, fresh: set[Any]
    ) -> None:
        self.delivery = delivery
        self.conn = conn
        self.consumer = consumer
        self.fresh = fresh
        self.records: list[OutgoingRecord] = []
        self.duplicates = 0

    async def deliver(self, message: Message[Event], handler: HandlerSpec) -> bool:
        """Run ``message``'s handler in the batch's transaction; False for a duplicate."""
        event_id = message.envelope.event_id
        if event_id not in self.fresh:
            self.duplicates += 1
            log.debug("%s: %s already processed", self.consumer, event_id)
            return False
        self.fresh.discard(event_id)  # the same message twice in one batch: once
        outputs = await self.delivery.handle(self.conn, message, handler)
        self.records.extend(self.delivery.outgoing(message, outputs))
        return True


class ReplayDelivery(TransactionalDelivery[C]):
    """A :class:`TransactionalDelivery` for rebuilding state from the log (``choreo replay``).

    The same transaction, inbox row and handler, but what the handler returns is not staged:
    it was published when the message was first processed. ``check``, if given, sees it
    (inside the transaction, so raising rolls the message back): the replay driver compares
    it with what the log shows.
    """

    def __init__(
        self,
        *,
        check: Callable[[Message[Event], Sequence[Event]], None] | None = None,
        db: Database,
        schema: str,
        context_factory: Callable[[Connection], C],
        producer_name: str,
        codec: Codec,
        settings: Settings,
    ) -> None:
        super().__init__(
            db=db,
            schema=schema,
            context_factory=context_factory,
            producer_name=producer_name,
            codec=codec,
            settings=settings,
        )
        self.check = check
        self.discarded = 0

    def outgoing(self, cause: Message[Event], outputs: Sequence[Event]) -> list[OutgoingRecord]:
        if self.check is not None:
            self.check(cause, outputs)
        self.discarded += len(outputs)
        return []


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """A consumed record waiting in the retry queue for its next attempt."""

    id: int
    record: ConsumerRecord
    attempts: int
    last_error: str


class PostgresRetryQueue:
    """Non-blocking retries: a record whose handler failed transiently is parked here with a
    due time, its offset is committed, and the partition moves on to other orders. The
    consumer's retry loop redelivers it when due (the inbox makes a redelivery after a crash
    harmless).
    """

    def __init__(self, db: Database, schema: str) -> None:
        self.db = db
        self.schema = schema

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

    async def due(self, consumer: str, limit: int = 100) -> list[ParkedRecord]:
        with tracing.housekeeping():  # polled ten times a second; the redelivery is traced
            rows = await self.db.pool.fetch(
                f"SELECT * FROM {self.schema}.retry_queue WHERE consumer = $1"
                " AND due_at <= now() ORDER BY due_at, id LIMIT $2",
                consumer,
                limit,
            )
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
            )
            for row in rows
        ]

    async def done_unless_reparked(self, parked: ParkedRecord) -> None:
        """Remove the row of an attempt that finished; a row parked again since (more
        attempts) stays."""
        await self.db.pool.execute(
            f"DELETE FROM {self.schema}.retry_queue WHERE id = $1 AND attempts = $2",
            parked.id,
            parked.attempts,
        )

    async def size(self, consumer: str | None = None) -> int:
        count: Any = await self.db.pool.fetchval(
            f"SELECT count(*) FROM {self.schema}.retry_queue"
            " WHERE $1::text IS NULL OR consumer = $1",
            consumer,
        )
        return int(count)


async def outbox_size(db: Database, schema: str) -> int:
    count: Any = await db.pool.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    return int(count)
