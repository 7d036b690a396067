"""Zero-downtime rebuild of the read models from the log, with an optional verification.

1. Replay every domain topic from offset 0 up to its end *as of the start* into shadow tables
   (``event_log_rebuild``, ``saga_status_rebuild``): batch decode, COPY, one fold per saga.
   Live queries keep reading the live tables meanwhile.
2. Swap under the projector's lock (live batches wait for it, briefly): catch the shadow up to
   the live checkpoints if the live projector went further meanwhile, compare shadow and live
   row by row (``verify``), rename the shadows in and drop the old tables, and set the
   checkpoints to what the new tables hold. Queries see either the old tables or the new ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.catalog import CATALOG
from events.codec import Codec
from events.database import Connection, Database
from events.schemas import SchemaRegistry
from events.security import kafka_options
from events.settings import Settings
from events.topics import event_topics, partitions_of
from projections import PROJECTOR, sagas_store, store
from projections.model import LoggedEvent
from projections.rebuild_lanes import BATCH, SHADOW, Progress, replay, run_lanes

TABLES = ("event_log", "saga_status")


@dataclass
class RebuildReport:
    """What a rebuild did and found."""

    events: int = 0
    skipped: int = 0
    sagas: int = 0
    caught_up: int = 0
    seconds: float = 0.0
    differences: list[str] = field(default_factory=list)
    verified: bool = False

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "skipped_undecodable": self.skipped,
            "sagas": self.sagas,
            "caught_up_during_swap": self.caught_up,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
            "verified": self.verified,
            "differences": self.differences,
        }


async def rebuild(
    settings: Settings,
    *,
    verify: bool = False,
    progress: Progress | None = None,
    codec: Codec | None = None,
    workers: int | None = None,
) -> RebuildReport:
    """Rebuild ``event_log`` and ``saga_status`` from the topics and swap them in.

    The replay runs in ``workers`` lanes (default: ``settings.rebuild_workers``; 0: see
    :func:`_lanes`), this process and the others in worker processes, each taking the partitions
    of some partition numbers across all topics; each folds the sagas it saw and writes their
    ``saga_status`` rows itself. Choreo's producers place a saga's messages on one partition
    number in every topic, so a lane usually holds whole sagas and the lanes never meet.
    Another producer's partitioner (librdkafka's CRC32, say), or topics with unequal partition
    counts, can spread a saga over lanes: the lane with its start event wrote a partial row, the
    others none (they report the key as unclaimed), so every unclaimed key is folded again from
    the whole shadow log before the swap.
    Worker processes build their codec from ``settings.schemas_dir``.
    """
    codec = codec or Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG)
    schema = PROJECTOR.schema(settings)
    report = RebuildReport(verified=verify)
    started = time.perf_counter()
    async with Database(settings) as db:
        await db.migrate(schema, *store.ddl())
        async with db.pool.acquire() as conn:
            shadows = (f"{schema}.{t}{SHADOW}" for t in TABLES)
            await conn.execute(f"DROP TABLE IF EXISTS {', '.join(shadows)}")
            for statement in store.table_ddl(schema, SHADOW, indexes=False):
                await conn.execute(statement)
        partitions = await partitions_of(settings, event_topics(settings))
        ends = await _end_offsets(settings, partitions)
        lanes = _lanes(partitions, workers or settings.rebuild_workers)
        unclaimed: set[str] = set()
        for lane in await run_lanes(settings, codec, schema, lanes, ends, progress):
            report.events += lane.events
            report.skipped += lane.skipped
            report.sagas += lane.sagas
            unclaimed.update(lane.unclaimed)
        async with db.pool.acquire() as conn:
            report.sagas -= await _drop_partial_rows(conn, schema, unclaimed)
        await _index_shadows(db, schema)
        async with db.pool.acquire() as conn:
            # Loaded packed; the rows inserted after the swap get the live table's room.
            await conn.execute(sagas_store.fillfactor_ddl(f"{schema}.saga_status{SHADOW}"))
            ids = sorted(unclaimed)
            for at in range(0, len(ids), BATCH):  # bounded memory when most sagas were split
                report.sagas += len(await store.refold(conn, schema, ids[at : at + BATCH], SHADOW))
        await _swap(settings, codec, db, schema, partitions, ends, report, verify)
    report.seconds = time.perf_counter() - started
    return report


def _lanes(partitions: list[TopicPartition], workers: int) -> list[list[TopicPartition]]:
    """Partitions grouped by partition number modulo the lane count (see :func:`rebuild`):
    ``workers`` lanes, at most one per partition number; 0: as many as share the partition
    numbers evenly over the CPUs (3 numbers on 2 CPUs: 3 lanes, not one of 2 and one of 1,
    which would take twice as long as the other)."""
    numbers = max((tp.partition + 1 for tp in partitions), default=1)
    if workers > 0:
        count = min(workers, numbers)
    else:
        per_lane = max(1, numbers // (os.cpu_count() or 1))
        count = -(-numbers // per_lane)  # ceiling division
    lanes: list[list[TopicPartition]] = [[] for _ in range(count)]
    for tp in partitions:
        lanes[tp.partition % count].append(tp)
    return lanes


async def _index_shadows(db: Database, schema: str) -> None:
    """Build the shadows' keys and indexes: the tables side by side, each on a connection of
    its own (a statement locks only its own table)."""
    by_table = (
        (store.log_key_ddl(schema, SHADOW), store.index_ddl(schema, SHADOW)),
        tuple(sagas_store.index_ddl(schema, SHADOW)),
    )

    async def build(statements: tuple[str, ...]) -> None:
        async with db.pool.acquire() as conn:
            for statement in statements:
                await conn.execute(statement)

    # gather, not a TaskGroup: a failure (a record logged twice breaks the unique key) is
    # raised as itself, not in an exception group.
    await asyncio.gather(*(build(statements) for statements in by_table))


async def _drop_partial_rows(conn: Connection, schema: str, keys: set[str]) -> int:
    """Delete the shadow rows of ``keys`` (one lane wrote a row of a saga another lane holds
    events of); returns how many."""
    deleted = await conn.fetch(
        f"DELETE FROM {schema}.saga_status{SHADOW} WHERE saga_key = ANY($1::text[])"
        " RETURNING saga_key",
        sorted(keys),
    )
    return len(deleted)


async def _end_offsets(
    settings: Settings, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        # Assigned first, the consumer fetches the metadata of every topic in one request;
        # else end_offsets learns of one topic per retry, a 100 ms backoff each.
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def _swap(
    settings: Settings,
    codec: Codec,
    db: Database,
    schema: str,
    partitions: list[TopicPartition],
    rebuilt_to: dict[TopicPartition, int],
    report: RebuildReport,
    verify: bool,
) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", store.PROJECTOR_LOCK)
        live = await store.load_offsets(conn, schema)
        live_at = {tp: live.get((tp.topic, tp.partition), 0) for tp in partitions}
        ahead = {tp: live_at[tp] for tp in partitions if live_at[tp] > rebuilt_to[tp]}
        if ahead:
            # The live projector went on while we replayed: bring the shadow to the same place.
            touched: dict[str, list[LoggedEvent]] = defaultdict(list)
            caught_up = await replay(
                settings, codec, db, schema, list(ahead), rebuilt_to, touched, None,
                until=ahead, conn=conn,
            )  # fmt: skip
            report.events += caught_up.events
            report.skipped += caught_up.skipped
            report.caught_up = caught_up.events
            await store.refold(conn, schema, touched, SHADOW)
        if verify:
            behind = sum(max(0, rebuilt_to[tp] - live_at[tp]) for tp in partitions)
            if behind:
                report.differences.append(
                    f"live projector is {behind} event(s) behind the rebuild "
                    "(not running?): rows of those events differ by staleness"
                )
            report.differences += await compare(conn, schema)
        for table in TABLES:
            await conn.execute(f"ALTER TABLE {schema}.{table} RENAME TO {table}_old")
            await conn.execute(f"ALTER TABLE {schema}.{table}{SHADOW} RENAME TO {table}")
            await conn.execute(f"DROP TABLE {schema}.{table}_old")
        # Every row is folded from the log now: an upgrade's queue of rows to fold is done.
        await conn.execute(f"DROP TABLE IF EXISTS {schema}.{sagas_store.BACKFILL}")
        await store.save_offsets(
            conn,
            schema,
            {(tp.topic, tp.partition): max(rebuilt_to[tp], live_at[tp]) for tp in partitions},
        )


LOG_COMPARED = (
    "event_id", "event_type", "order_id", "occurred_at", "producer", "schema_version",
    "correlation_id", "causation_id", "traceparent", "payload", "summary",
)  # fmt: skip


async def compare(conn: Connection, schema: str, limit: int = 50) -> list[str]:
    """Row-by-row differences between the live tables and the shadows (at most ``limit``)."""
    log_cols = ", ".join(LOG_COMPARED)
    saga_cols = ", ".join(sagas_store.SAGA_STATUS_COLUMNS)
    differences: list[str] = []
    for label, live_sql, shadow_sql, key in (
        (
            "event_log",
            f'SELECT topic, partition, "offset", {log_cols} FROM {schema}.event_log',
            f'SELECT topic, partition, "offset", {log_cols} FROM {schema}.event_log{SHADOW}',
            "topic || '/' || partition || '@' || \"offset\"",
        ),
        (
            "saga_status",
            f"SELECT {saga_cols} FROM {schema}.saga_status",
            f"SELECT {saga_cols} FROM {schema}.saga_status{SHADOW}",
            "saga_type || '/' || saga_key",
        ),
    ):
        rows = await conn.fetch(
            f"""
            SELECT 'only in live' AS side, {key} AS k FROM (({live_sql}) EXCEPT ({shadow_sql})) d
            UNION ALL
            SELECT 'only in rebuild', {key} FROM (({shadow_sql}) EXCEPT ({live_sql})) d
            ORDER BY 2, 1 LIMIT {limit}
            """
        )
        differences += [f"{label} {r['k']}: {r['side']}" for r in rows]
    return differences
