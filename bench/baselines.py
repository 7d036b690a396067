"""What the platform's work costs without Choreo, measured on the same machine in the same run.

- :func:`raw_kafka`: aiokafka produce → consume of as many messages of the same average size
  on a fresh topic, no handlers, no PostgreSQL.
- :func:`codec_vs_fastavro`: ``Codec.encode``/``decode`` against bare fastavro
  ``schemaless_writer``/``schemaless_reader`` of the same events.
- :func:`copy_rows`: asyncpg ``copy_records_to_table`` of the projector's rows into a temp table.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from fastavro import schemaless_reader, schemaless_writer

from events.codec import HEADER_SIZE, MAGIC, Codec
from events.database import Database
from events.security import kafka_options
from events.settings import Settings
from events.topics import partitions_of, provision_topics


@dataclass(frozen=True)
class RawKafkaResult:
    """Bare aiokafka: produce ``messages`` (acks=all, idempotent) and consume them back."""

    messages: int
    message_bytes: int
    key_bytes: int
    seconds: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds": round(self.seconds, 4),
            "messages_per_second": round(self.messages_per_second, 1),
        }


async def raw_kafka(
    settings: Settings,
    *,
    messages: int,
    message_bytes: int,
    key_bytes: int = 16,
    timeout_s: float = 300.0,
) -> RawKafkaResult:
    """Produce ``messages`` values of ``message_bytes`` (a Choreo record's value plus its
    headers, on average) to a fresh topic with the producer settings Choreo uses, while one
    consumer reads them back; time from the first send to the last record consumed. The topic
    is deleted afterwards."""
    topic = f"{settings.topic_prefix}bench-raw-{uuid.uuid4().hex[:6]}"
    await provision_topics(settings, [topic])
    producer = AIOKafkaProducer(
        **kafka_options(settings),
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.producer_linger_ms,
        max_batch_size=256 * 1024,
    )
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False)
    value = bytes(range(256)) * (message_bytes // 256) + bytes(message_bytes % 256)
    try:
        await producer.start()
        await consumer.start()
        partitions = await partitions_of(settings, [topic])
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)

        async def consume() -> float:
            seen = 0
            while seen < messages:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                seen += sum(len(records) for records in batch.values())
            return time.perf_counter()

        reader = asyncio.create_task(consume())
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value=value, key=f"{i:0{key_bytes}x}".encode())
            for i in range(messages)
        ]
        await asyncio.gather(*futures)
        finished = await asyncio.wait_for(reader, timeout_s)
    finally:
        await producer.stop()
        await consumer.stop()
        await delete_topics(settings, [topic])
    return RawKafkaResult(messages, message_bytes, key_bytes, finished - started)


async def delete_topics(settings: Settings, topics: Sequence[str]) -> None:
    """Delete ``topics`` (those that exist)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


@dataclass(frozen=True)
class CodecResult:
    """Microseconds per event of Choreo's codec and of bare fastavro, each way."""

    events: int
    codec_encode_us: float
    fastavro_encode_us: float
    codec_decode_us: float
    fastavro_decode_us: float

    @property
    def encode_ratio(self) -> float:
        return self.codec_encode_us / self.fastavro_encode_us

    @property
    def decode_ratio(self) -> float:
        return self.codec_decode_us / self.fastavro_decode_us

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()},
            "encode_ratio": round(self.encode_ratio, 3),
            "decode_ratio": round(self.decode_ratio, 3),
        }


def codec_vs_fastavro(codec: Codec, values: Sequence[bytes], *, rounds: int = 3) -> CodecResult:
    """Time ``Codec.encode``/``Codec.decode`` of the events in ``values`` (Choreo record values)
    against fastavro writing the same records as plain dicts and reading them back as dicts,
    with the same schema and the same 10-byte single-object header; best of ``rounds``.

    The difference is Choreo's own work: pydantic models to dicts and back (validation), the
    envelope, the fingerprint lookup and the trailing-bytes check.
    """
    messages = [codec.decode(v) for v in values]
    raw: list[tuple[bytes, Any, dict[str, Any]]] = []
    for value, message in zip(values, messages, strict=True):
        writer = codec.registry.by_fingerprint(value[2:HEADER_SIZE])
        record = message.event.model_dump()
        record["envelope"] = message.envelope.model_dump()
        raw.append((value[2:HEADER_SIZE], writer.parsed, record))

    def fastavro_encode() -> None:
        for fingerprint, schema, record in raw:
            buf = io.BytesIO()
            buf.write(MAGIC)
            buf.write(fingerprint)
            schemaless_writer(buf, schema, record)
            buf.getvalue()

    def fastavro_decode() -> None:
        for value, (_, schema, _) in zip(values, raw, strict=True):
            body = io.BytesIO(value)
            body.seek(HEADER_SIZE)
            schemaless_reader(body, schema, None)

    def codec_encode() -> None:
        for message in messages:
            codec.encode(message)

    def codec_decode() -> None:
        for value in values:
            codec.decode(value)

    n = max(1, len(values))
    return CodecResult(
        events=len(values),
        codec_encode_us=_best(codec_encode, rounds) / n * 1e6,
        fastavro_encode_us=_best(fastavro_encode, rounds) / n * 1e6,
        codec_decode_us=_best(codec_decode, rounds) / n * 1e6,
        fastavro_decode_us=_best(fastavro_decode, rounds) / n * 1e6,
    )


def _best(work: Callable[[], None], rounds: int) -> float:
    """The fastest of ``rounds`` runs of ``work``, in seconds."""
    best = float("inf")
    for _ in range(max(1, rounds)):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class CopyResult:
    """Bare asyncpg COPY of ``rows`` event_log rows into a temp table."""

    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds": round(self.seconds, 4),
            "rows_per_second": round(self.rows_per_second, 1),
        }


async def copy_rows(settings: Settings, schema: str) -> CopyResult:
    """COPY the rows of ``<schema>.event_log`` (the projector's log of the run) into a temp
    table with the same columns and indexes, timing the COPY alone."""
    async with Database(settings, max_size=1) as db, db.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT * FROM {schema}.event_log")
        if not rows:
            return CopyResult(0, 0.0)
        columns = list(rows[0].keys())
        records = [tuple(r) for r in rows]
        await conn.execute(
            f"CREATE TEMP TABLE bench_copy (LIKE {schema}.event_log INCLUDING INDEXES)"
        )
        try:
            started = time.perf_counter()
            await conn.copy_records_to_table("bench_copy", records=records, columns=columns)
            seconds = time.perf_counter() - started
        finally:
            await conn.execute("DROP TABLE IF EXISTS bench_copy")
    return CopyResult(len(records), seconds)
