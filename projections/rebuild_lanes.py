"""A rebuild's replay lanes: the worker processes, and the replay of partitions into the shadow
log (batch decode, background COPY) with one fold per saga at the end.

See :func:`projections.rebuild.rebuild` for how partitions are grouped into lanes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import queue
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.process import BaseProcess
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.catalog import CATALOG
from events.codec import Codec
from events.database import Connection, Database
from events.errors import ChoreoError, ContractError
from events.schemas import SchemaRegistry
from events.security import kafka_options
from events.settings import Settings
from projections import sagas_store, store
from projections.model import LoggedEvent
from projections.projector import log_row

SHADOW = "_rebuild"
BATCH = 5000
Progress = Callable[[int, int], None]
"""``progress(done, total)``: events replayed so far of the total to replay."""


PRELOAD = ["__main__", "choreo.cli", __name__]
"""What the fork server imports before it forks a worker. ``choreo.cli`` is what the ``choreo``
script (``__main__``) imports: CPython before 3.13 never preloads ``__main__`` (gh-126631), so
each worker ran the script again, importing the whole CLI (0.35 s of CPU, 0.45 s wall in a
rebuild: its lanes started that much after lane 0)."""


class RebuildError(ChoreoError):
    """A rebuild could not finish; the live tables are untouched."""


@dataclass(frozen=True)
class LaneResult:
    """What one lane replayed and folded."""

    events: int
    skipped: int
    sagas: int
    unclaimed: tuple[str, ...] = ()
    """Keys of events no saga claimed in this lane (none of its start events were among
    them): orphans, or sagas another lane holds part of."""


@dataclass
class Replayed:
    """Records :func:`replay` logged, and those it skipped as undecodable."""

    events: int = 0
    skipped: int = 0


async def run_lanes(
    settings: Settings,
    codec: Codec,
    schema: str,
    lanes: list[list[TopicPartition]],
    ends: dict[TopicPartition, int],
    progress: Progress | None,
) -> list[LaneResult]:
    """Run lane 0 here and the others in worker processes; their results, lane by lane."""
    # Workers fork from a fork server that imported this module (the codec's models, aiokafka,
    # asyncpg) once: a spawned worker spent about a second of CPU importing them, each. The
    # server starts fresh, without an event loop (fork and a running loop don't mix).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    if len(lanes) > 1:  # one lane forks nothing: no server importing the CLI for nothing
        _start_fork_server()
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
    # Lane 0 replays while the workers start: the first start waits for the fork server to
    # import its modules (about a second).
    starting = asyncio.create_task(asyncio.to_thread(_start, workers))
    total = sum(ends.values())
    ticker = (
        asyncio.create_task(_report_progress(done, total, progress))
        if progress is not None
        else None
    )
    collected: list[LaneResult] | None = None
    try:
        own = await _rebuild_lane(settings, codec, schema, lanes[0], ends, _counter(done, 0))
        await asyncio.shield(starting)  # a thread cannot be cancelled: the finally waits for it
        collected = await _collect(own, workers, results)
        return collected
    finally:
        if ticker is not None:
            ticker.cancel()
        with contextlib.suppress(Exception):
            await starting  # before joining: a worker may be starting still
        await _join(workers, stop=collected is None)
        if progress is not None:
            progress(sum(done), total)


def _start_fork_server() -> None:
    """Start the fork server now, if it is not running, with SIGINT ignored: it and every
    worker it forks inherit that, so a Ctrl-C is only the calling process's, which stops the
    workers (each of them printed a ``KeyboardInterrupt`` traceback of its own otherwise).
    Only the main thread may change a signal's handler; called from another (or where Python
    does not own SIGINT's), the fork server starts with the first worker, as it would."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def _start(workers: Sequence[BaseProcess]) -> None:
    """Start ``workers`` (called in a thread: the first start waits for the fork server)."""
    for worker in workers:
        worker.start()


async def _collect(
    own: LaneResult, workers: Sequence[BaseProcess], results: Any
) -> list[LaneResult]:
    """Every lane's result, lane 0's (``own``) first; raises the first failure of a worker
    (its error, or its exit without a result)."""
    outcomes: dict[int, LaneResult | str] = {0: own}
    while len(outcomes) <= len(workers):
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


async def _join(workers: Sequence[BaseProcess], *, stop: bool) -> None:
    """Wait a little for each started worker to exit, then stop it; with ``stop`` (the
    rebuild failed or was cancelled: what they replay is dropped) stop them at once."""
    for worker in workers:
        if worker.pid is None:  # never started
            continue
        if stop and worker.is_alive():
            worker.terminate()
        await asyncio.to_thread(worker.join, 5)
        if worker.is_alive():
            worker.terminate()


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
    and write their shadow ``saga_status`` rows."""
    events_by_order: dict[str, list[LoggedEvent]] = defaultdict(list)
    with _collector_paused():
        async with Database(settings, max_size=2) as db:
            replayed = await replay(
                settings, codec, db, schema, partitions, None, events_by_order, progress,
                until={tp: ends[tp] for tp in partitions},
            )  # fmt: skip
            async with db.pool.acquire() as conn:
                sagas = await sagas_store.copy_rows(conn, schema, events_by_order, SHADOW)
        # Freed while the collector is still off: enabled first, its next run would traverse
        # every one of these objects once more before they go (3% of a lane's CPU).
        claimed = {v.saga_key for v in sagas}
        unclaimed = tuple(key for key in events_by_order if key not in claimed)
        events_by_order.clear()
    return LaneResult(replayed.events, replayed.skipped, len(sagas), unclaimed)


async def replay(
    settings: Settings,
    codec: Codec,
    db: Database,
    schema: str,
    partitions: list[TopicPartition],
    start: dict[TopicPartition, int] | None,
    events_by_order: dict[str, list[LoggedEvent]] | None,
    progress: Progress | None,
    *,
    until: dict[TopicPartition, int],
    conn: Connection | None = None,
) -> Replayed:
    """Copy records [start, until) of ``partitions`` into the shadow log (and, given
    ``events_by_order``, add each logged event to its order's list there)."""
    report = Replayed()
    begin = start or {}
    remaining = {tp for tp in partitions if until[tp] > begin.get(tp, 0)}
    if not remaining:  # nothing to copy; aiokafka's stop right after its start can raise
        return report
    consumer = _consumer(settings)
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
    return report


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection meanwhile.

    A lane keeps every event it reads until its fold, hundreds of thousands of live objects
    that each automatic collection traverses again for nothing: that was 40% of a lane's CPU.
    Reference counting still frees each batch's garbage, and the events are kept either way.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer without a group, fetching large batches (a replay reads whole partitions)."""
    return AIOKafkaConsumer(
        **kafka_options(settings),
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )


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
