"""A chaos run: place the orders while the faults are injected, wait for quiescence, check.

Quiescence is read cheaply and often: every order and return of the run has had its terminal
(or needs-attention) event on its topic (the follower of :mod:`choreo.chaos.orders` sees
them; also the progress display), no service has an outbox row left to publish, and the
projector has read every event topic to its end; twice in a row, a second apart. The verdict
is then taken from the services' own tables (:mod:`choreo.chaos.snapshot`), never from the
read model or the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer

from choreo.chaos import infra
from choreo.chaos.faults import FaultInjector
from choreo.chaos.invariants import cancelled_by_deadline, check_all
from choreo.chaos.orders import OrderFollower, PlacedOrder, place_all
from choreo.chaos.plan import STOPPABLE, ChaosConfig, schedule
from choreo.chaos.processes import platform_processes
from choreo.chaos.report import ChaosReport
from choreo.chaos.returns import ReturnPlan
from choreo.chaos.snapshot import Snapshot, read_dead_letters, take
from choreo.client import ChoreoClient
from choreo.mix import assign_scenarios
from choreo.registry import NAMES, PROCESSES
from choreo.roles import as_process
from events.database import Database, schema_name
from events.errors import ChoreoError
from events.replay.engine import consumer_group_sizes
from events.security import kafka_options
from events.settings import Settings
from events.topics import event_topics, partitions_of
from projections import PROJECTOR
from projections.rebuild import rebuild
from projections.store import load_offsets

POLL_S = 1.0
DLQ_WAIT_S = 30.0


class Display(Protocol):
    """Where a run reports its progress (the CLI's progress bars; a no-op in tests)."""

    def phase(self, text: str) -> None: ...
    def placed(self, count: int) -> None: ...
    def ended(self, count: int) -> None: ...
    def returns(self, ended: int, asked: int) -> None: ...
    def note(self, text: str) -> None: ...


async def preflight(settings: Settings, config: ChaosConfig) -> None:
    """Refuse a run with no platform of this topic prefix to act on.

    Raises:
        ChoreoError: a process the faults act on is not running here, or a consuming
            process's consumer group has no member (see :func:`consumers_missing`).
    """
    running = platform_processes(settings.topic_prefix, settings.state_dir)
    missing = [name for name in NAMES if name not in running]
    if missing and {"kill", "stop"} & set(config.faults):
        raise ChoreoError(
            f"no running {', '.join(missing)} with topic prefix {settings.topic_prefix!r}"
            f" and state folder {settings.state_dir}:"
            " start the platform with `choreo run` (or `make run`) first"
        )
    missing = await consumers_missing(settings)
    if missing:
        raise ChoreoError(
            f"nothing consumes topic prefix {settings.topic_prefix!r} as {', '.join(missing)}"
            " (their consumer groups have no member): start the platform with `choreo run`"
            " (or `make run`) first"
        )


async def consumers_missing(settings: Settings) -> list[str]:
    """The platform's consuming processes whose consumer group of this topic prefix has no
    member: wherever the platform runs (this machine or another), nothing would handle the
    run's orders, which would then wait out the quiet timeout and fail every invariant."""
    groups = {spec.group(settings): spec.name for spec in PROCESSES if spec.name in STOPPABLE}
    sizes = await consumer_group_sizes(settings, list(groups))
    return [name for group, name in groups.items() if not sizes[group]]


async def run_chaos(settings: Settings, config: ChaosConfig, display: Display) -> ChaosReport:
    """Run the whole chaos (see the module docstring) and return its report.

    Raises:
        ChoreoError: the platform is not running (see :func:`preflight`).
    """
    await preflight(settings, config)
    report = ChaosReport(config, datetime.now(UTC).isoformat(timespec="seconds"))
    brokers = infra.broker_count(settings) if "broker" in config.faults else 1
    faults = schedule(config, brokers)
    scenarios = assign_scenarios(config.mix, config.orders, config.seed or 0)
    started = time.monotonic()
    placed: list[PlacedOrder] = []
    async with ChoreoClient(settings) as client:
        follower = OrderFollower(settings, client, ReturnPlan(config.returns))
        injector = FaultInjector(
            settings, config, client, placed, display.note, returns=follower.returns
        )
        await follower.start()
        watcher = asyncio.create_task(_watch_ended(follower, display))
        try:
            display.phase(f"placing {config.orders} orders, {len(faults)} faults")
            await asyncio.gather(
                place_all(client, scenarios, config.rate, placed, display.placed, follower.ours),
                injector.run(faults, started),
            )
            lap = report.lap("placing", started)
            # Connected only now: a fault may have restarted PostgreSQL meanwhile.
            async with Database(settings, max_size=4) as db:
                display.phase("waiting for quiescence")
                report.quiet = await wait_quiet(settings, db, follower, config.quiet_timeout_s)
                lap = report.lap("quiescence", lap)
                display.phase("checking invariants")
                snap = await take(settings, db, client, placed, follower.returns)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await follower.stop()
        snap.injected = injector.injected
        await _await_dead_letters(client, snap)
        lap = report.lap("reading", lap)
    if config.verify_projections:
        display.phase("rebuilding the read models from the log")
        rebuilt = await rebuild(as_process(settings, PROJECTOR.name), verify=True)
        snap.rebuild_differences = rebuilt.differences
        report.lap("rebuild", lap)
    report.placed, report.approved = len(placed), follower.approved
    report.returned = len(follower.returns)
    report.resent, report.retried = injector.resent, injector.retried
    report.faults = injector.results
    report.count_outcomes(snap.orders, snap.returns)
    report.cancelled_by_deadline = cancelled_by_deadline(snap)
    report.checks = check_all(snap)
    report.seconds = time.monotonic() - started
    return report


async def _await_dead_letters(client: ChoreoClient, snap: Snapshot) -> None:
    """Give the consumers a moment to dead-letter the last malformed values."""
    deadline = time.monotonic() + DLQ_WAIT_S
    while time.monotonic() < deadline:
        wanted = {(r.topic, r.partition, r.offset) for r in snap.injected}
        if wanted <= set(snap.dead_letters):
            return
        await asyncio.sleep(POLL_S)
        snap.dead_letters = await read_dead_letters(client)


async def _watch_ended(follower: OrderFollower, display: Display) -> None:
    while True:
        display.ended(len(follower.ended))
        display.returns(len(follower.returns_ended), len(follower.returns))
        await asyncio.sleep(POLL_S)


async def _outbox_rows(settings: Settings, db: Database) -> int:
    schemas = [schema_name(settings, name) for name in NAMES]
    async with db.pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables"
            " WHERE table_name = 'outbox' AND table_schema = ANY($1)",
            schemas,
        )
        total = 0
        for row in found:
            total += await conn.fetchval(f"SELECT count(*) FROM {row['table_schema']}.outbox")
    return total


async def _projector_behind(settings: Settings, db: Database) -> int:
    partitions = await partitions_of(settings, event_topics(settings))
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    async with db.pool.acquire() as conn:
        done = await load_offsets(conn, PROJECTOR.schema(settings))
    return sum(max(0, end - done.get((tp.topic, tp.partition), 0)) for tp, end in ends.items())


async def quiet_now(settings: Settings, db: Database, follower: OrderFollower) -> bool:
    """Every order and return settled (its terminal or needs-attention event seen), outboxes
    empty, the projector at the log's end."""
    if not follower.settled():
        return False
    return await _outbox_rows(settings, db) == 0 and await _projector_behind(settings, db) == 0


async def wait_quiet(
    settings: Settings,
    db: Database,
    follower: OrderFollower,
    timeout_s: float,
) -> bool:
    """Wait until :func:`quiet_now` holds twice in a row; False if not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while time.monotonic() < deadline:
        try:
            streak = streak + 1 if await quiet_now(settings, db, follower) else 0
        except Exception:  # a restart still settling: not quiet yet
            streak = 0
        if streak >= 2:
            return True
        await asyncio.sleep(POLL_S)
    return False
