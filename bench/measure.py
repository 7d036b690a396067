"""What a bench run measures beside latency: CPU seconds and peak RSS per process, events
produced and consumed, and load from outside the platform."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from choreo import registry
from events.database import Database
from events.security import kafka_options
from events.settings import Settings
from events.topics import partitions_of
from projections import PROJECTOR


def cpu_seconds(pid: int, *, with_children: bool = False) -> float | None:
    """User + system CPU seconds of ``pid`` (plus its children's, live and reaped)."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system
        if with_children:
            total += times.children_user + times.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
        return total
    except psutil.Error:
        return None


JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")
"""HotSpot's compiler threads, as ``/proc`` names them (15 characters)."""


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every CPU, every process: user, nice,
    system and interrupts; not idle, I/O wait or a hypervisor's steal) since boot; the
    difference over a window is that window's CPU."""
    t = psutil.cpu_times()
    irq = getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return float(t.user + t.nice + t.system + irq)


def jit_cpu_seconds(pid: int) -> float | None:
    """CPU seconds a JVM's JIT compiler threads have used (None for a process without
    them): Kafka's broker compiles its hot paths over the first minutes of traffic, and
    that CPU is warm-up, not the cost of the messages."""
    ticks, found = 0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                if not comm.read().startswith(JIT_THREADS):
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


def peak_rss_kb(pid: int) -> int | None:
    """The process's peak resident set size (``VmHWM`` in ``/proc/<pid>/status``), in kB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Watched:
    """A process whose CPU time and memory the bench follows."""

    name: str
    pid: int
    with_children: bool = False
    cpu_before: float | None = None
    cpu_after: float | None = None
    jit_before: float | None = None
    jit_after: float | None = None
    peak_kb: int = 0

    def sample(self) -> None:
        kb = peak_rss_kb(self.pid)
        if kb is not None:
            self.peak_kb = max(self.peak_kb, kb)


async def sample_memory(watched: Sequence[Watched], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for w in watched:
            w.sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def end_offsets(settings: Settings, topics: Sequence[str]) -> int:
    """The sum of the end offsets of every partition of ``topics``: records written so far."""
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await partitions_of(settings, topics))
    finally:
        await consumer.stop()
    return int(sum(ends.values()))


async def group_positions(settings: Settings, groups: Sequence[str]) -> dict[str, int]:
    """The sum of each consumer group's committed offsets (0 before its first commit)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        positions: dict[str, int] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            positions[group] = sum(max(0, meta.offset) for meta in committed.values())
        return positions
    finally:
        await admin.close()


async def projector_position(db: Database, settings: Settings) -> tuple[int, int]:
    """The projector's checkpoints (sum of next offsets) and how many rows it has logged."""
    schema = PROJECTOR.schema(settings)
    async with db.pool.acquire() as conn:
        if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.projector_offsets") is None:
            return 0, 0
        checkpoint = await conn.fetchval(
            f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.projector_offsets"
        )
        rows = await conn.fetchval(f"SELECT count(*) FROM {schema}.event_log")
    return int(checkpoint), int(rows)


def foreign_load(own: Sequence[int]) -> str:
    """What else loads the machine: the 1-minute load average and how many Choreo service
    processes run that are not ``own`` (another platform, e.g. someone's e2e tests)."""
    others = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["pid"] not in own and "choreo" in cmdline and "service" in cmdline:
            others += 1
    return f"load average {os.getloadavg()[0]:.1f}, {others} other choreo processes"


def group_of(settings: Settings, process: str) -> str | None:
    """The consumer group of a service process (``<prefix><name>``); None for the others."""
    spec = registry.get(process)
    return spec.group(settings) if spec.is_service else None
