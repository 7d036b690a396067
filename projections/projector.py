"""The projector process: domain topics → event log + order read model, exactly once.

It consumes every domain topic in its own consumer group, but its positions live in
PostgreSQL: each batch's log rows, read-model rows and next offsets commit in one transaction,
and records below the stored offsets are dropped. A crash mid-batch therefore loses nothing and
logs nothing twice. Records that are not valid events are dead-lettered like anywhere else
(:class:`~events.dlq.DeadLetterSink`) and skipped. Each event gets a span in its order's trace.
It polls on the same loop as every consumer and starts through the same entry point as the
services (:func:`events.service.run_process`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry import trace

from contracts.catalog import CATALOG
from events import metrics, tracing
from events.codec import Codec
from events.consumer import PollLoop
from events.database import Database
from events.dlq import DeadLetterSink
from events.errors import ContractError
from events.fetch_pacing import FetchPacing
from events.headers import header
from events.model import Event, Message
from events.producer import EventProducer
from events.schemas import SchemaRegistry
from events.service import run_process
from events.settings import Settings, get_settings
from events.spans import RuntimeTracer
from events.topics import event_topics, provision_topics
from projections import PROJECTOR, store
from projections.history_cache import OrderHistoryCache

NAME = PROJECTOR.name
log = logging.getLogger("choreo.projector")
_tracer = RuntimeTracer("choreo.projector")


def log_row(
    record: ConsumerRecord, message: Message[Event], payload: dict[str, Any] | None = None
) -> store.LogRow:
    """The event_log row of a consumed, decoded message (``payload``: its payload as a dict,
    when the caller has it already)."""
    env = message.envelope
    if payload is None:
        payload = message.event.model_dump()
    return store.LogRow(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        event_id=env.event_id,
        event_type=env.event_type,
        order_id=env.saga_key,
        occurred_at=env.occurred_at,
        producer=env.producer,
        schema_version=env.schema_version,
        correlation_id=env.correlation_id,
        causation_id=env.causation_id,
        traceparent=header(record.headers, "traceparent"),
        payload=store.payload_json(payload),
        summary=message.event.summary(),
    )


@dataclass
class ProjectorStats:
    batches: int = 0
    events: int = 0
    dead_lettered: int = 0
    started: float = field(default_factory=time.monotonic)


class Projector:
    """Consumes the domain topics into the projector's tables. ``start``/``run``/``stop``/
    ``close``, on the same poll loop as every consumer (:class:`~events.consumer.PollLoop`),
    with :meth:`process` as its poll processor."""

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG)
        self.schema = PROJECTOR.schema(settings)
        self.group_id = PROJECTOR.group(settings)
        self.db = Database(settings)
        self.producer = EventProducer(settings, self.codec, client_id=NAME)
        self.sink = DeadLetterSink(NAME, self.group_id, self.producer, settings.dlq_topic)
        # Positions come from the group's Kafka commits, made only after the PostgreSQL
        # commit; they can lag the checkpoints (a failed commit, a rebuild's swap), never lead
        # them, and each batch drops what is below the checkpoint. So no seek is needed, and
        # none races a rebalance. The commits are for lag tools only: a failed one is no news.
        self.poller = PollLoop(
            name=NAME,
            group_id=self.group_id,
            topics=event_topics(settings),
            settings=settings,
            process=self.process,
            max_records=settings.consumer_batch_size * 4,
            isolation_level="read_uncommitted",
            commit_failure_level=logging.DEBUG,
            pacing=FetchPacing(settings.projector_fetch_wait_ms),
        )
        self.stats = ProjectorStats()
        self.cache = (
            OrderHistoryCache(settings.projector_cache_orders)
            if settings.projector_cache_orders > 0
            else None
        )

    async def start(self) -> None:
        """Connect and join the group; idempotent (``run`` calls it too)."""
        if self.poller.started:
            return
        await provision_topics(self.settings)
        await self.db.start()
        await self.db.migrate(self.schema, *store.ddl())
        async with self.db.pool.acquire() as conn:
            if folded := await store.backfill(conn, self.schema):
                log.info("folded %d saga rows of an older projector again from the log", folded)
        await self.producer.start()
        await self.poller.start()

    async def run(self) -> None:
        """Project until :meth:`stop`."""
        await self.start()
        await self.poller.run()

    async def process(self, poll: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """The poll processor: project the poll, then report its offsets for the commit."""
        offsets = await self.project([r for records in poll.values() for r in records])
        await self.poller.delivered(offsets)

    async def project(self, records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
        """Log, project and checkpoint one batch in one transaction; returns the next
        offsets."""
        started = time.time_ns()
        rows: list[store.LogRow] = []
        contexts = []
        offsets: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            offsets[key] = max(offsets.get(key, 0), record.offset + 1)
            try:
                message = self.codec.decode(record.value)
            except ContractError as exc:
                await self.sink.send(record, exc, attempts=1)
                self.stats.dead_lettered += 1
                continue
            rows.append(log_row(record, message))
            contexts.append((record, message))
        try:
            # The batch's statements serve many orders' traces at once: each event gets its
            # own span instead (see _trace).
            with tracing.housekeeping():
                async with self.db.pool.acquire() as conn, conn.transaction():
                    await store.apply_batch(conn, self.schema, rows, offsets, self.cache)
        except BaseException:
            if self.cache is not None:
                self.cache.discard()
            raise
        if self.cache is not None:
            self.cache.commit()
        self._trace(contexts, started)
        self.stats.batches += 1
        self.stats.events += len(rows)
        metrics.count_processed(self.group_id, "*", "handled", len(rows))
        return {TopicPartition(t, p): o for (t, p), o in offsets.items()}

    def _trace(self, contexts: list[tuple[ConsumerRecord, Message[Event]]], started: int) -> None:
        """One span per event in its order's trace, covering the batch that projected it."""
        if not tracing.active():
            return
        for record, message in contexts:
            parent = tracing.extract(record.headers)
            if _tracer.dropped(parent):  # not sampled: no span to make
                continue
            span = _tracer.start_span(
                f"{record.topic} project",
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                start_time=started,
                attributes=tracing.consumer_attributes(
                    record.topic,
                    record.partition,
                    record.offset,
                    self.group_id,
                    message.envelope.event_type,
                    message.saga_key,
                ),
            )
            span.end()

    async def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group; idempotent."""
        await self.poller.stop()

    async def close(self) -> None:
        await self.poller.stop()
        await self.producer.stop()
        await self.db.stop()


def run(settings: Settings | None = None) -> None:
    """Entry point of the projector process: run until SIGTERM/SIGINT, then finish the batch."""
    settings = settings or get_settings()
    run_process(
        NAME,
        settings,
        lambda: Projector(settings),
        ready=lambda _: f"projecting {', '.join(event_topics(settings))}",
        summary=lambda projector: f"after {projector.stats.events} events",
    )
