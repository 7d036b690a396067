"""Reading and writing events from the command line: the round trip check and `events tail`
(personal data concealed, a forgotten customer's erased)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from contracts.catalog import CATALOG
from contracts.samples import EXAMPLES
from events.codec import Codec
from events.errors import ContractError
from events.model import Event, Message
from events.personal_data import conceal, forgotten_customers, keys_schema
from events.producer import EventProducer
from events.schemas import SchemaRegistry
from events.security import kafka_options
from events.settings import Settings
from events.topics import event_topics, partitions_of


@dataclass(frozen=True)
class RoundTrip:
    """One event sent and read back."""

    event_type: str
    topic: str
    partition: int
    offset: int
    size: int
    schema_version: int
    equal: bool


def make_codec(settings: Settings) -> Codec:
    return Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG)


async def _assign_at_end(consumer: AIOKafkaConsumer, settings: Settings, topics: list[str]) -> None:
    """Assign every partition of ``topics`` and position the consumer at their current ends."""
    partitions = await partitions_of(settings, topics)
    consumer.assign(partitions)
    for tp, offset in (await consumer.end_offsets(partitions)).items():
        consumer.seek(tp, offset)


async def round_trip(settings: Settings, timeout_s: float = 30.0) -> list[RoundTrip]:
    """Publish one example of every catalog event for a new order and read each one back."""
    codec = make_codec(settings)
    topics = event_topics(settings)
    order_id = f"demo-{uuid.uuid4().hex[:8]}"
    first = Message.first(
        EXAMPLES["order.placed"], saga_type="order", saga_key=order_id, producer="cli"
    )
    sent: list[Message[Event]] = [first] + [
        first.caused(e, producer="cli") for t, e in EXAMPLES.items() if t != "order.placed"
    ]
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False)
    try:
        await consumer.start()  # in the try: a consumer that failed to start is closed too
        await _assign_at_end(consumer, settings, topics)
        async with EventProducer(settings, codec, client_id="choreo-cli") as producer:
            await producer.publish(sent)
        wanted = {str(m.envelope.event_id): m for m in sent}
        results: list[RoundTrip] = []
        async for record in _records(consumer, timeout_s, len(sent)):
            message = codec.decode(record.value)
            original = wanted.pop(str(message.envelope.event_id), None)
            if original is None:
                continue  # someone else's event on the same topic
            results.append(
                RoundTrip(
                    event_type=message.envelope.event_type,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    size=len(record.value or b""),
                    schema_version=message.envelope.schema_version,
                    equal=message.envelope == original.envelope and message.event == original.event,
                )
            )
            if not wanted:
                break
        results.extend(
            RoundTrip(m.envelope.event_type, "-", -1, -1, 0, m.envelope.schema_version, False)
            for m in wanted.values()
        )
        return results
    finally:
        await consumer.stop()


async def _records(
    consumer: AIOKafkaConsumer, timeout_s: float, at_most: int | None
) -> AsyncIterator[ConsumerRecord]:
    import time

    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline and (at_most is None or seen < at_most * 10):
        batch = await consumer.getmany(timeout_ms=200)
        for records in batch.values():
            for record in records:
                seen += 1
                yield record


async def tail(
    settings: Settings, *, domains: list[str], from_beginning: bool, limit: int | None
) -> AsyncIterator[tuple[ConsumerRecord, Message[Event] | ContractError]]:
    """Decoded events of the domain topics as they arrive (no consumer group, commits nothing)."""
    codec = make_codec(settings)
    topics = [f"{settings.topic_prefix}{d}" for d in domains] if domains else event_topics(settings)
    consumer = AIOKafkaConsumer(
        *topics,
        **kafka_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    count = 0
    try:
        await consumer.start()
        async for record in consumer:
            decoded: Message[Event] | ContractError
            try:
                decoded = codec.decode(record.value)
            except ContractError as exc:
                decoded = exc
            yield record, decoded
            count += 1
            if limit is not None and count >= limit:
                return
    finally:
        await consumer.stop()


async def _presence_reader(settings: Settings) -> asyncpg.Connection | None:
    """A connection that may read which customers' keys exist; None when PostgreSQL cannot be
    reached (the tail still prints, sealed values as ``[sealed]``)."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError):
        return None
    return conn


async def shown_event(
    conn: asyncpg.Connection | None, settings: Settings, decoded: Message[Event]
) -> dict[str, object]:
    """The event of ``decoded`` as tools print it: sealed values concealed, those of a
    forgotten customer (no key in the presence view) as erased."""
    event = decoded.event.model_dump(mode="json")
    forgotten = frozenset[str]()
    if conn is not None:
        forgotten = await forgotten_customers(conn, keys_schema(settings), event)
    shown = conceal(event, forgotten)
    assert isinstance(shown, dict)
    return shown


async def tail_rows(
    settings: Settings, *, domains: list[str], from_beginning: bool, limit: int | None
) -> AsyncIterator[tuple[Message[Event] | ContractError, dict[str, object]]]:
    """:func:`tail`'s events as `choreo events tail --json` prints them (``at``, and
    ``envelope`` and ``event`` (:func:`shown_event`), or ``error``)."""
    conn = await _presence_reader(settings)
    try:
        async for record, decoded in tail(
            settings, domains=domains, from_beginning=from_beginning, limit=limit
        ):
            where = f"{record.topic}/{record.partition}@{record.offset}"
            if isinstance(decoded, ContractError):
                yield decoded, {"at": where, "error": str(decoded)}
                continue
            row: dict[str, object] = {
                "at": where,
                "envelope": decoded.envelope.model_dump(mode="json"),
                "event": await shown_event(conn, settings, decoded),
            }
            yield decoded, row
    finally:
        if conn is not None:
            await conn.close()
