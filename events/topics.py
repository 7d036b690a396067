"""Topic layout and provisioning.

One topic per domain (``<prefix>order``, ``<prefix>inventory``, ...): every event and command of
a domain lives there, keyed by order id, so all messages of one order in one domain keep their
order. Event topics keep everything forever (``retention.ms=-1``): they are the append-only log
that replay reads. ``<prefix>dlq`` holds what could not be processed, also forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.metadata import MetadataRequest

from events.errors import StackError
from events.model import Event
from events.schemas import event_types_in
from events.security import kafka_options
from events.settings import Settings

TOPIC_ALREADY_EXISTS = 36
FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


def topic_for(event_type: str | type[Event], settings: Settings) -> str:
    """The topic an event type lives on: ``<prefix><domain>``."""
    name = event_type if isinstance(event_type, str) else event_type.event_type
    return f"{settings.topic_prefix}{name.split('.', 1)[0]}"


def event_topics(settings: Settings) -> list[str]:
    """Every domain topic: one per domain that ``schemas/`` (the contract) has events of."""
    return sorted({topic_for(t, settings) for t in event_types_in(settings.schemas_dir)})


def all_topics(settings: Settings) -> list[str]:
    return [*event_topics(settings), settings.dlq_topic]


def min_insync(settings: Settings, replication: int) -> int:
    """``min.insync.replicas`` of a topic with ``replication`` replicas: the setting, else 2
    when there are 3 or more (an acks=all write survives the loss of any one broker, and a
    partition keeps taking writes while one broker is down), else 1."""
    return settings.topic_min_insync_replicas or (2 if replication >= 3 else 1)


async def provision_topics(settings: Settings, topics: Iterable[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the ones created.

    Each has ``topic_partitions`` partitions, ``topic_replication_factor`` replicas (by
    default as many as the cluster has brokers, at most 3) and :func:`min_insync`.
    """
    wanted = list(topics) if topics is not None else all_topics(settings)
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        replication = settings.topic_replication_factor or min(3, await _broker_count(admin))
        configs = {**FOREVER, "min.insync.replicas": str(min_insync(settings, replication))}
        response = await admin.create_topics(
            [
                NewTopic(
                    name=t,
                    num_partitions=settings.topic_partitions,
                    replication_factor=replication,
                    topic_configs=configs,
                )
                for t in missing
            ]
        )
        failures = [
            f"{name}: {message or code}"
            for name, code, *rest in response.topic_errors
            for message in [rest[0] if rest else None]
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise StackError("could not create topics: " + "; ".join(failures))
        return missing
    finally:
        await admin.close()


async def _broker_count(admin: AIOKafkaAdminClient) -> int:
    """How many brokers the cluster has: the most that any broker's own metadata lists.

    Each broker serves metadata from its own copy of the cluster's log, and one that has just
    started or caught up can list fewer brokers than the others for a moment; asking one
    broker at random then gave a 3-node cluster's topics 2 replicas for good.
    """
    return max(await brokers_listed(admin))


async def brokers_listed(admin: AIOKafkaAdminClient) -> list[int]:
    """How many brokers each broker lists in its own metadata, asked at once; a broker that
    does not answer (dead, not fenced yet) is left out. Raises StackError if none answers."""
    brokers = admin._client.cluster.brokers()
    answers = await asyncio.gather(
        *(admin._send_request(MetadataRequest([]), broker.nodeId) for broker in brokers),
        return_exceptions=True,
    )
    counts = [len(a.to_object()["brokers"]) for a in answers if not isinstance(a, BaseException)]
    if not counts:
        why = f": {answers[0]!r}" if answers else ""
        raise StackError(f"no broker answered a metadata request{why}")
    return counts


async def partitions_of(settings: Settings, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, from the cluster's metadata."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        (TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]),
        key=lambda tp: (tp.topic, tp.partition),
    )


async def read_to_end(
    settings: Settings, topics: Iterable[str], *, timeout_s: float = 60.0
) -> AsyncIterator[ConsumerRecord]:
    """Every record of ``topics`` from the beginning up to their ends as of now, without a
    consumer group (nothing is committed). Raises TimeoutError if the ends are not reached."""
    partitions = await partitions_of(settings, topics)
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)  # explicit: seek_to_beginning after assign fetched nothing
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"did not reach the end of {sorted(map(str, remaining))}")
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
