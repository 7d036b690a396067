"""Zero-downtime rebuild of the read models from the log, with an optional verification.

1. Replay every domain topic from offset 0 up to its end *as of the start* into shadow tables
   (``event_log_rebuild``, ``order_status_rebuild``, ``saga_status_rebuild``): batch decode,
   COPY, one fold per order (and per saga).
   Live queries keep reading the live tables meanwhile.
2. Swap under the projector's lock (live batches wait for it, briefly): catch the shadow up to
   the live checkpoints if the live projector went further meanwhile, compare shadow and live
   row by row (``verify``), rename the shadows in and drop the old tables, and set the
   checkpoints to what the new tables hold. Queries see either the old tables or the new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.catalog import CATALOG
from events.codec import Codec
from events.database import Connection, Database
from events.errors import ChoreoError, ContractError
from events.schemas import SchemaRegistry
from events.security import kafka_options
from events.settings import Settings
from events.topics import event_topics, partitions_of
from projections import PROJECTOR, sagas_store, store
from projections.model import LoggedEvent, fold_order
from projections.projector import log_row

SHADOW = "_rebuild"
TABLES = ("event_log", "order_status", "saga_status")
BATCH = 5000
Progress = Callable[[int, int], None]
"""``progress(done, total)``: events replayed so far of the total to replay."""


class RebuildError(ChoreoError):
    """A rebuild could not finish; the live tables are untouched."""


@dataclass
class RebuildReport:
    """What a rebuild did and found."""

    events: int = 0
    skipped: int = 0
    orders: int = 0
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
            "orders": self.orders,
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
    """Rebuild ``event_log``, ``order_status`` and ``saga_status`` from the topics and swap
    them in.

    The replay runs in ``workers`` lanes (default: ``settings.rebuild_workers``), this process
    and ``workers - 1`` worker processes, each taking the partitions of some partition numbers
    across all topics; each folds the orders it saw and writes their ``order_status`` rows
    itself. Choreo's producers place an order's messages on one partition number in every
    topic, so a lane usually holds whole orders and the lanes never meet. Another producer's
    partitioner (librdkafka's CRC32, say), or topics with unequal partition counts, can
    spread an order over lanes: each then wrote a partial row for it, so such orders (those
    with more than one row) are folded again from the whole shadow log before the swap.
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
        for lane in await _run_lanes(settings, codec, schema, lanes, ends, progress):
            report.events += lane.events
            report.skipped += lane.skipped
            report.orders += lane.orders
        async with db.pool.acquire() as conn:
            split = await _drop_partial_rows(conn, schema)
            keys = store.status_key_ddl(schema, SHADOW)
            sagas = sagas_store.index_ddl(schema, SHADOW)
            for statement in (*store.index_ddl(schema, SHADOW), keys, *sagas):
                await conn.execute(statement)
            ids = sorted(split)
            for at in range(0, len(ids), BATCH):  # bounded memory when most orders were split
                await store.refold(conn, schema, ids[at : at + BATCH], SHADOW)
        report.orders -= sum(split.values()) - len(split)
        await _swap(settings, codec, db, schema, partitions, ends, report, verify)
    report.seconds = time.perf_counter() - started
    return report


def _lanes(partitions: list[TopicPartition], workers: int) -> list[list[TopicPartition]]:
    """Partitions grouped by partition number modulo the lane count (see :func:`rebuild`)."""
    numbers = max((tp.partition + 1 for tp in partitions), default=1)
    count = max(1, min(workers if workers > 0 else os.cpu_count() or 1, numbers))
    lanes: list[list[TopicPartition]] = [[] for _ in range(count)]
    for tp in partitions:
        lanes[tp.partition % count].append(tp)
    return lanes


async def _drop_partial_rows(conn: Connection, schema: str) -> dict[str, int]:
    """Delete the shadow rows of orders that more than one lane saw (each folded part of the
    order), their sagas' rows too; returns those orders and how many rows each had."""
    rows = await conn.fetch(
        f"DELETE FROM {schema}.order_status{SHADOW} WHERE order_id IN"
        f" (SELECT order_id FROM {schema}.order_status{SHADOW}"
        "  GROUP BY order_id HAVING count(*) > 1)"
        " RETURNING order_id"
    )
    split: dict[str, int] = defaultdict(int)
    for row in rows:
        split[row["order_id"]] += 1
    await conn.execute(
        f"DELETE FROM {schema}.saga_status{SHADOW} WHERE saga_key = ANY($1::text[])", list(split)
    )
    return split


async def _end_offsets(
    settings: Settings, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class LaneResult:
    events: int
    skipped: int
    orders: int


async def _run_lanes(
    settings: Settings,
    codec: Codec,
    schema: str,
    lanes: list[list[TopicPartition]],
    ends: dict[TopicPartition, int],
    progress: Progress | None,
) -> list[LaneResult]:
    """Run lane 0 here and the others in worker processes; their results, lane by lane."""
    context = multiprocessing.get_context("spawn")  # fork and a running event loop don't mix
    done = context.Array("q", len(lanes), lock=False)  # events replayed, per lane
    results = context.Queue()
    workers = [
        context.Process(
            target=_lane_process,
            args=(settings, schema, index, lane, {tp: ends[tp] for tp in lane}, done, results),
            name=f"choreo-rebuild-{index}",
            daemon=True,
        )
        for index, lane in enumerate(lanes[1:], start=1)
    ]
    for worker in workers:
        worker.start()
    total = sum(ends.values())
    ticker = (
        asyncio.create_task(_report_progress(done, total, progress))
        if progress is not None
        else None
    )
    try:
        own = await _rebuild_lane(settings, codec, schema, lanes[0], ends, _counter(done, 0))
        outcomes: dict[int, LaneResult | str] = {0: own}
        while len(outcomes) < len(lanes):
            try:
                index, outcome = await asyncio.to_thread(results.get, True, 0.5)
            except queue.Empty:
                for index, worker in enumerate(workers, start=1):
                    if index not in outcomes and worker.exitcode is not None:
                        outcomes[index] = f"worker {worker.name} exited with {worker.exitcode}"
                continue
            outcomes[index] = outcome
        failures = [o for o in outcomes.values() if isinstance(o, str)]
        if failures:
            raise RebuildError(f"a rebuild lane failed: {failures[0]}")
        return [o for _, o in sorted(outcomes.items()) if isinstance(o, LaneResult)]
    finally:
        if ticker is not None:
            ticker.cancel()
        for worker in workers:
            await asyncio.to_thread(worker.join, 5)
            if worker.is_alive():
                worker.terminate()
        if progress is not None:
            progress(sum(done), total)


async def _report_progress(done: Any, total: int, progress: Progress) -> None:
    while True:
        progress(sum(done), total)
        await asyncio.sleep(0.2)


def _counter(done: Any, index: int) -> Progress:
    """A lane's progress callback: its count of replayed events into the shared ``done``."""

    def count(replayed: int, _: int) -> None:
        done[index] = replayed

    return count


def _lane_process(
    settings: Settings,
    schema: str,
    index: int,
    partitions: list[TopicPartition],
    ends: dict[TopicPartition, int],
    done: Any,
    results: Any,
) -> None:
    """Entry point of a worker process: one lane, its result (or error) on ``results``."""
    try:
        codec = Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG)
        counted = _counter(done, index)
        lane = asyncio.run(_rebuild_lane(settings, codec, schema, partitions, ends, counted))
        results.put((index, lane))
    except BaseException as exc:
        results.put((index, f"{type(exc).__name__}: {exc}"))


async def _rebuild_lane(
    settings: Settings,
    codec: Codec,
    schema: str,
    partitions: list[TopicPartition],
    ends: dict[TopicPartition, int],
    progress: Progress | None,
) -> LaneResult:
    """Replay ``partitions`` up to ``ends`` into the shadow log, fold their orders and sagas
    and write their shadow ``order_status`` and ``saga_status`` rows."""
    report = RebuildReport()
    events_by_order: dict[str, list[LoggedEvent]] = defaultdict(list)
    async with Database(settings, max_size=2) as db:
        await _replay(
            settings, codec, db, schema, partitions, None, events_by_order, report, progress,
            until={tp: ends[tp] for tp in partitions},
        )  # fmt: skip
        async with db.pool.acquire() as conn:
            sagas = await sagas_store.copy_rows(conn, schema, events_by_order, SHADOW)
            others = sagas_store.not_orders(sagas)
            views = [fold_order(o, evs) for o, evs in events_by_order.items() if o not in others]
            await conn.copy_records_to_table(
                f"order_status{SHADOW}",
                schema_name=schema,
                columns=store.ORDER_STATUS_COLUMNS,
                records=[store.status_tuple(v) for v in views],
            )
    return LaneResult(report.events, report.skipped, len(views))


async def _replay(
    settings: Settings,
    codec: Codec,
    db: Database,
    schema: str,
    partitions: list[TopicPartition],
    start: dict[TopicPartition, int] | None,
    events_by_order: dict[str, list[LoggedEvent]] | None,
    report: RebuildReport,
    progress: Progress | None,
    *,
    until: dict[TopicPartition, int],
    conn: Connection | None = None,
) -> None:
    """Copy records [start, until) of ``partitions`` into the shadow log."""
    begin = start or {}
    remaining = {tp for tp in partitions if until[tp] > begin.get(tp, 0)}
    if not remaining:  # nothing to copy; aiokafka's stop right after its start can raise
        return
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, begin.get(tp, 0))
        total = sum(max(0, until[tp] - begin.get(tp, 0)) for tp in partitions)
        done, writer = 0, _LogWriter(db, schema, conn)
        while remaining:
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            rows: list[store.LogRow] = []
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= until[tp]:
                        continue
                    done += 1
                    try:
                        message, payload = codec.decode_with_payload(record.value)
                    except ContractError:
                        report.skipped += 1  # the live projector dead-letters these too
                        continue
                    row = log_row(record, message, payload)
                    rows.append(row)
                    if events_by_order is not None:
                        events_by_order[row.order_id].append(row.logged(payload))
                if records and records[-1].offset + 1 >= until[tp]:
                    remaining.discard(tp)
            if rows:
                await writer.write(rows)
                report.events += len(rows)
            if progress is not None:
                progress(done, total)
        await writer.flush()
    finally:
        await consumer.stop()
        await writer.close()


class _LogWriter:
    """Writes batches of rows into the shadow log.

    Outside a transaction it COPYs on a connection of its own, in the background: the next
    batch is fetched and decoded while PostgreSQL loads this one (at most one COPY in flight,
    so rows land in order and memory stays bounded). Inside the swap's transaction (``conn``)
    it inserts there, in line.
    """

    def __init__(self, db: Database, schema: str, conn: Connection | None) -> None:
        self.db = db
        self.schema = schema
        self.conn = conn
        self._copying: asyncio.Task[None] | None = None
        self._own: Any = None

    async def write(self, rows: list[store.LogRow]) -> None:
        if self.conn is not None:
            await store.insert_log_rows(self.conn, self.schema, rows, SHADOW)
            return
        await self.flush()
        if self._own is None:
            self._own = await self.db.pool.acquire()
        self._copying = asyncio.create_task(self._copy(self._own, [r.as_tuple() for r in rows]))

    async def _copy(self, conn: Connection, records: list[tuple[Any, ...]]) -> None:
        await conn.copy_records_to_table(
            f"event_log{SHADOW}",
            schema_name=self.schema,
            columns=store.EVENT_LOG_COLUMNS,
            records=records,
        )

    async def flush(self) -> None:
        """Wait for the COPY in flight (raising its error, if any)."""
        copying, self._copying = self._copying, None
        if copying is not None:
            await copying

    async def close(self) -> None:
        copying, self._copying = self._copying, None
        if copying is not None and not copying.done():
            copying.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await copying
        if self._own is not None:
            await self.db.pool.release(self._own)
            self._own = None


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
            before = report.events
            touched: dict[str, list[LoggedEvent]] = defaultdict(list)
            await _replay(
                settings, codec, db, schema, list(ahead), rebuilt_to, touched, report, None,
                until=ahead, conn=conn,
            )  # fmt: skip
            report.caught_up = report.events - before
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
    status_cols = ", ".join(store.ORDER_STATUS_COLUMNS)
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
            "order_status",
            f"SELECT {status_cols} FROM {schema}.order_status",
            f"SELECT {status_cols} FROM {schema}.order_status{SHADOW}",
            "order_id",
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
