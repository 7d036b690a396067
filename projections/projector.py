"""The projector process: domain topics → event log + order read model, exactly once.

It consumes every domain topic in its own consumer group, but its positions live in
PostgreSQL: each batch's log rows, read-model rows and next offsets commit in one transaction,
and records below the stored offsets are dropped. A crash mid-batch therefore loses nothing and
logs nothing twice. Records that are not valid events are dead-lettered like
anywhere else and skipped. Each event gets a span in its order's trace.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry import trace

from events import metrics, tracing
from events.codec import Codec
from events.dlq import letter_for
from events.errors import ContractError
from events.logs import configure_logging
from events.model import Event, Message
from events.postgres import Database
from events.producer import EventProducer
from events.runtime import OffsetCommits
from events.schemas import SchemaRegistry
from events.settings import Settings, get_settings
from events.topics import event_topics, provision_topics
from projections import PROJECTOR, store
from projections.model import summarize

NAME = PROJECTOR.name
log = logging.getLogger("choreo.projector")
_tracer = trace.get_tracer("choreo.projector")


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
        order_id=env.order_id,
        occurred_at=env.occurred_at,
        producer=env.producer,
        schema_version=env.schema_version,
        correlation_id=env.correlation_id,
        causation_id=env.causation_id,
        traceparent=next((v.decode() for k, v in record.headers or () if k == "traceparent"), None),
        payload=store.payload_json(payload),
        summary=summarize(env.event_type, payload),
    )


@dataclass
class ProjectorStats:
    batches: int = 0
    events: int = 0
    dead_lettered: int = 0
    started: float = field(default_factory=time.monotonic)


class Projector:
    """Consumes the domain topics into the projector's tables. ``start``/``run``/``stop``."""

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec(SchemaRegistry.load(settings.schemas_dir))
        self.schema = PROJECTOR.schema(settings)
        self.group_id = PROJECTOR.group(settings)
        self.db = Database(settings)
        self.producer = EventProducer(settings, self.codec, client_id=NAME)
        self.consumer: AIOKafkaConsumer | None = None
        self.stats = ProjectorStats()
        self.stopping = asyncio.Event()
        # For lag tools only: the checkpoints in PostgreSQL are authoritative.
        self._commits = OffsetCommits(
            NAME, settings.consumer_commit_interval_ms, failure_level=logging.DEBUG
        )
        self.cache = (
            store.OrderHistoryCache(settings.projector_cache_orders)
            if settings.projector_cache_orders > 0
            else None
        )

    async def start(self) -> None:
        """Connect and join the group; idempotent (``run`` calls it too)."""
        if self.consumer is not None:
            return
        await provision_topics(self.settings)
        await self.db.start()
        await self.db.migrate(self.schema, *store.ddl())
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group_id,
            client_id=NAME,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.consumer_batch_size * 4,
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=max(300, self.settings.consumer_session_timeout_ms // 4),
        )
        # Positions come from the group's Kafka commits, made only after the PostgreSQL
        # commit; they can lag the checkpoints (a failed commit, a rebuild's swap), never lead
        # them, and each batch drops what is below the checkpoint. So no seek is needed, and
        # none races a rebalance.
        self.consumer.subscribe(event_topics(self.settings))
        await self.consumer.start()

    async def run(self) -> None:
        await self.start()
        assert self.consumer is not None
        while not self.stopping.is_set():
            batch = await self.consumer.getmany(
                timeout_ms=self.settings.consumer_poll_timeout_ms,
                max_records=self.settings.consumer_batch_size * 4,
            )
            if batch:
                await self.project([r for records in batch.values() for r in records])
            await self._commits.flush(self.consumer)
        await self._commits.flush(self.consumer, force=True)

    async def project(self, records: Sequence[ConsumerRecord]) -> None:
        """Log, project and checkpoint one batch in one transaction."""
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
                await self._dead_letter(record, exc)
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
        self._commits.add({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        self._trace(contexts, started)
        self.stats.batches += 1
        self.stats.events += len(rows)
        metrics.events_processed().add(len(rows), {"consumer": self.group_id, "outcome": "handled",
                                                   "event_type": "*"})  # fmt: skip

    def _trace(self, contexts: list[tuple[ConsumerRecord, Message[Event]]], started: int) -> None:
        """One span per event in its order's trace, covering the batch that projected it."""
        for record, message in contexts:
            span = _tracer.start_span(
                f"{record.topic} project",
                context=tracing.extract(record.headers),
                kind=trace.SpanKind.CONSUMER,
                start_time=started,
                attributes=tracing.consumer_attributes(
                    record.topic,
                    record.partition,
                    record.offset,
                    self.group_id,
                    message.envelope.event_type,
                    message.order_id,
                ),
            )
            span.end()

    async def _dead_letter(self, record: ConsumerRecord, error: ContractError) -> None:
        letter = letter_for(record, error, consumer=self.group_id, attempts=1)
        await self.producer.send_records([letter.to_record(self.settings.dlq_topic)])
        self.stats.dead_lettered += 1
        log.error("%s@%d/%d dead-lettered: %s", record.topic, record.partition, record.offset,
                  letter.reason)  # fmt: skip

    async def stop(self) -> None:
        self.stopping.set()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        await self.producer.stop()
        await self.db.stop()


def run(settings: Settings | None = None) -> None:
    """Entry point of the projector process: run until SIGTERM/SIGINT, then finish the batch."""
    settings = settings or get_settings()
    configure_logging(NAME, settings.log_level, settings.log_format)
    tracing.configure_tracing(NAME, settings)

    async def main() -> None:
        projector = Projector(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, projector.stopping.set)
        try:
            await projector.start()
            log.info("%s ready: projecting %s", NAME, ", ".join(event_topics(settings)))
            await projector.run()
        finally:
            await projector.close()
            log.info("%s stopped after %d events", NAME, projector.stats.events)

    try:
        asyncio.run(main())
    finally:
        tracing.shutdown_tracing()
