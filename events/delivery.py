"""How a handler's outcome becomes durable: the deliveries a consumer hands messages to.

A :class:`Delivery` runs one handler and makes its outcome durable before the consumer may
commit the offset; a :class:`BatchDelivery` can also take a whole poll in one transaction.

:class:`DirectDelivery` publishes what the handler returns and waits for the broker
(at-least-once). For a process whose handlers change state, :class:`TransactionalDelivery`
runs each message in one PostgreSQL transaction that (1) records ``(consumer, event_id)`` in
the inbox — a message seen before is skipped, so redelivery and replay have no second effect
—, (2) runs the handler with a context bound to that transaction, and (3) writes the messages
it returns to the outbox (:mod:`events.outbox`). Either all three commit or none does; once
they have, the delivery publishes the outbox rows itself (or leaves them to the relay). The
inbox statement also deletes the rows earlier deliveries published, in the same commit.

A delivery processes its message at one instant (:func:`events.model.frozen_clock`): the inbox
row, the handler's records and the emitted envelopes share it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from events import tracing
from events.codec import Codec
from events.database import Connection, Database, untraced_transaction
from events.model import Event, Message, frozen_clock, utc_now
from events.outbox import OutboxRelay, Staged, delete_published, stage
from events.producer import EventProducer, OutgoingRecord, to_record
from events.router import HandlerSpec, caused_messages
from events.settings import Settings
from events.spans import RuntimeTracer

log = logging.getLogger("choreo.postgres")
_tracer = RuntimeTracer("choreo.events")

C = TypeVar("C")


class Delivery(Protocol):
    """Runs one handler and makes its outcome durable before the offset may be committed."""

    async def deliver(
        self, consumer: str, message: Message[Event], handler: HandlerSpec
    ) -> bool | None:
        """Return False if the message was a duplicate (already processed, nothing done).

        Raise to signal failure; a retryable :class:`ChoreoError` (or any non-Choreo error)
        is retried with backoff, anything else goes to the dead-letter topic."""


class BatchSession(Protocol):
    """One open transaction of a :class:`BatchDelivery`, delivering messages in turn."""

    async def deliver(self, message: Message[Event], handler: HandlerSpec) -> bool:
        """Like :meth:`Delivery.deliver`, inside the batch's transaction; raising aborts it."""
        ...


class BatchDelivery(Delivery, Protocol):
    """A delivery that can also make a whole poll's outcomes durable in one transaction.

    ``batch(consumer, messages)`` opens it for ``messages`` (all of which will be delivered
    in that order through the session); the outcomes become durable together when the
    context exits without an exception, and none does when it raises.
    """

    def batch(
        self, consumer: str, messages: Sequence[Message[Event]]
    ) -> contextlib.AbstractAsyncContextManager[BatchSession]: ...


BatchScope = Callable[[C, Sequence[Message[Event]]], contextlib.AbstractAsyncContextManager[None]]
"""What a process does around a batch's handlers, given their shared context and the batch's
new messages (the coordinator reads all their sagas ahead and records its decisions at once)."""


class DirectDelivery(Generic[C]):
    """Call the handler and publish what it returns, waiting for the broker's acknowledgement.

    At-least-once: a crash between publish and commit republishes; consumers downstream dedupe
    by event id. Processes whose handlers change state use a transactional delivery instead.
    """

    def __init__(self, producer: EventProducer, context: C, producer_name: str) -> None:
        self.producer = producer
        self.context = context
        self.producer_name = producer_name

    async def deliver(
        self, consumer: str, message: Message[Event], handler: HandlerSpec
    ) -> bool | None:
        outputs = await handler.func(message, self.context)
        await self.producer.publish(caused_messages(message, outputs, self.producer_name))
        return True


class TransactionalDelivery(Generic[C]):
    """Inbox check, handler and outbox in one PostgreSQL transaction (see the module docs).

    ``context_factory`` builds the handler's context (e.g. the service's state store) bound to
    the transaction's connection: one per message, or with ``batch_scope`` one per batch: the
    batch's handlers then run inside ``batch_scope(context, messages)``, entered with the
    batch's new messages before the first handler and left (unless one raised) before the
    outbox rows are staged and the transaction commits.
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
        batch_scope: BatchScope[C] | None = None,
    ) -> None:
        self.db = db
        self.schema = schema
        self.context_factory = context_factory
        self.producer_name = producer_name
        self.codec = codec
        self.settings = settings
        self.relay = relay
        self.batch_scope = batch_scope
        self.duplicates = 0
        self._delete_published = delete_published(schema, 5)

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
        with frozen_clock() as instant, self._published_rows() as gone:
            async with self.db.pool.acquire() as conn, untraced_transaction(conn):
                with tracing.housekeeping():
                    rows = await conn.fetch(
                        f"WITH gone AS ({self._delete_published})"
                        f" INSERT INTO {self.schema}.inbox"
                        " (consumer, event_id, event_type, processed_at)"
                        " SELECT $1, m.event_id, m.event_type, $4"
                        " FROM unnest($2::uuid[], $3::text[]) AS m(event_id, event_type)"
                        " ON CONFLICT DO NOTHING RETURNING event_id",
                        consumer,
                        [m.envelope.event_id for m in messages],
                        [m.envelope.event_type for m in messages],
                        instant,
                        gone,
                    )
                fresh = {row["event_id"] for row in rows}
                session = DeliveryBatch(self, conn, consumer, fresh)
                if self.batch_scope is None:
                    yield session
                else:
                    session.context = self.context_factory(conn)
                    new = [m for m in messages if m.envelope.event_id in fresh]
                    async with self.batch_scope(session.context, new):
                        yield session
                with tracing.housekeeping():
                    staged = await stage(conn, self.schema, session.records, self._published_ids())
        self.duplicates += session.duplicates
        if self.relay is not None:
            await self.relay.publish_committed(staged)

    async def deliver(
        self, consumer: str, message: Message[Event], handler: HandlerSpec
    ) -> bool | None:
        # One instant for the whole message: the inbox row, what the handler records and the
        # envelopes of what it emits carry the same time, which a replay reads back from the
        # log (the emitted envelopes' occurred_at) to compute the same rows again.
        with frozen_clock(), self._published_rows() as gone:
            async with self.db.pool.acquire() as conn, conn.transaction():
                fresh = await conn.fetchval(
                    f"WITH gone AS ({self._delete_published})"
                    f" INSERT INTO {self.schema}.inbox"
                    " (consumer, event_id, event_type, processed_at) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT DO NOTHING RETURNING true",
                    consumer,
                    message.envelope.event_id,
                    message.envelope.event_type,
                    utc_now(),
                    gone,
                )
                if not fresh:
                    self.duplicates += 1
                    log.debug("%s: %s already processed", consumer, message.envelope.event_id)
                    return False
                outputs = await self.handle(conn, message, handler)
                staged = await self.emit(conn, message, outputs)
        if self.relay is not None:
            await self.relay.publish_committed(staged)
        return True

    async def handle(
        self,
        conn: Connection,
        message: Message[Event],
        handler: HandlerSpec,
        context: C | None = None,
    ) -> list[Event]:
        """Run the handler on the transaction's connection (with ``context``, else a new one);
        returns what it emits."""
        if not tracing.active():
            return await self._run(conn, message, handler, context)
        with _tracer.start_as_current_span(
            f"handle {message.envelope.event_type}",
            attributes={"choreo.handler": handler.name, "choreo.order_id": message.saga_key},
        ):
            return await self._run(conn, message, handler, context)

    async def _run(
        self, conn: Connection, message: Message[Event], handler: HandlerSpec, context: C | None
    ) -> list[Event]:
        if context is None:
            context = self.context_factory(conn)
        return list(await handler.func(message, context) or ())

    def outgoing(self, cause: Message[Event], outputs: Sequence[Event]) -> list[OutgoingRecord]:
        """The records to stage for what a handler returned. Raising rolls the delivery back."""
        return [
            to_record(m, self.codec, self.settings)
            for m in caused_messages(cause, outputs, self.producer_name)
        ]

    async def emit(
        self, conn: Connection, cause: Message[Event], outputs: Sequence[Event]
    ) -> Staged:
        """Stage what the handler returned in the outbox, inside the delivery's transaction.

        Returns what was staged. Raising rolls the whole delivery back.
        """
        return await stage(conn, self.schema, self.outgoing(cause, outputs), self._published_ids())

    def _published_rows(self) -> contextlib.AbstractContextManager[Sequence[int]]:
        """Claims the rows earlier deliveries published, for this transaction to delete."""
        if self.relay is None:
            return contextlib.nullcontext(())
        return self.relay.published_rows.claim()

    def _published_ids(self) -> list[int]:
        return [] if self.relay is None else self.relay.published_rows.ids()


class DeliveryBatch(Generic[C]):
    """The session of one :meth:`TransactionalDelivery.batch`: delivers messages in turn."""

    def __init__(
        self, delivery: TransactionalDelivery[C], conn: Connection, consumer: str, fresh: set[Any]
    ) -> None:
        self.delivery = delivery
        self.conn = conn
        self.consumer = consumer
        self.fresh = fresh
        self.context: C | None = None
        """The batch's one context, when the delivery has a batch scope."""
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
        outputs = await self.delivery.handle(self.conn, message, handler, self.context)
        self.records.extend(self.delivery.outgoing(message, outputs))
        return True
