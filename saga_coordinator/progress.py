"""How far Choreo's queues have moved: sampled log end offsets and consumer group progress.

A deadline judges a participant only for the time it had the trigger (see
:mod:`saga_coordinator.fairness`). Kafka tells that without a message more: the broker keeps
every consumer group's committed offsets and each partition's end offset. The coordinator's
:class:`ProgressSampler` reads them every ``timer_progress_interval_ms`` (one ListOffsets, one
OffsetFetch and one DescribeGroups per group, asked of the group's coordinator, which is looked
up every few seconds: nothing per message) into a
:class:`ProgressLog`, a few minutes of samples in memory, from which one can tell:

- when a group had consumed everything a topic held at an earlier instant (so a participant
  had got to a trigger sent then, whatever partition the trigger's producer chose);
- how long a group was *able* to work since then: a gap between samples (the broker could not
  be asked) and a sample in which the group had no member consuming (killed, stopped past its
  session timeout, rebalancing) do not count;
- whether a group (the coordinator's) has consumed everything the topics held at an instant.

Every replica of the coordinator samples for itself; the log starts empty when the process
starts, so a pick-up before it counts from the first sample (later, never earlier).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from events.security import kafka_options
from events.settings import Settings
from events.topics import partitions_of

log = logging.getLogger("choreo.saga.progress")

SAMPLE_TIMEOUT_S = 5.0
"""How long one reading may take before it counts as failed (a gap)."""
COORDINATOR_TTL_S = 10.0
"""How long the groups' coordinators, once found, are asked directly before they are looked
up again (a group whose coordinator moved answers with an error, which looks them up at once)."""

Position = tuple[str, int]
"""A partition: (topic, partition number)."""
Offsets = Mapping[Position, int]


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the broker.

    Attributes:
        at: When it was taken (the coordinator's clock).
        ends: Each watched partition's end offset (the next offset to be written).
        committed: Each group's committed offsets.
        live: The groups that had a member consuming (state Stable, with members).
    """

    at: datetime
    ends: Offsets
    committed: Mapping[str, Offsets]
    live: frozenset[str]


class ProgressLog:
    """Samples of the last ``keep``; a gap over ``stale`` between two counts as an outage.

    Pure: fed by :meth:`add`, asked by the other methods.
    """

    def __init__(self, *, keep: timedelta, stale: timedelta) -> None:
        self.keep = keep
        self.stale = stale
        self.samples: deque[Sample] = deque()
        self._known: set[tuple[str, str | None]] = set()

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        self._known.update((group, None) for group in sample.live)
        for group, offsets in sample.committed.items():
            self._known.update((group, topic) for topic, _ in offsets)
        while self.samples and self.samples[0].at < sample.at - self.keep:
            self.samples.popleft()

    def fresh(self, now: datetime) -> bool:
        """Whether the latest sample is recent: the broker answers."""
        return bool(self.samples) and now - self.samples[-1].at <= self.stale

    def knows(self, group: str, topic: str) -> bool:
        """Whether ``group`` was ever seen running or having consumed ``topic`` (else it is no
        participant here). Ever, not lately: right after a broker restart a group can read as
        empty for a moment."""
        return (group, None) in self._known or (group, topic) in self._known

    def reached(
        self, group: str, position: tuple[str, int, int], since: datetime
    ) -> datetime | None:
        """When ``group`` had consumed every record before ``position`` (so it had got to the
        record there, sent at ``since``), or None if it has not yet (never before ``since``,
        nor before the log's first sample)."""
        topic, partition, offset = position
        for sample in self.samples:
            if sample.committed.get(group, {}).get((topic, partition), 0) >= offset:
                return max(sample.at, since)
        return None

    def handled(self, group: str, topic: str, since: datetime) -> datetime | None:
        """When ``group`` had consumed everything ``topic`` held at the first sample at or
        after ``since`` (so it had handled a message sent by then), or None if not yet."""
        base = self.first_at_or_after(since)
        if base is None:
            return None
        target = {tp: end for tp, end in base.ends.items() if tp[0] == topic}
        for sample in self.samples:
            if sample.at >= base.at and _passed(sample.committed.get(group, {}), target):
                return sample.at
        return None

    def working(self, group: str, start: datetime, now: datetime) -> timedelta:
        """How long ``group`` could work between ``start`` and ``now``: the time between
        consecutive samples both showing it live, and since the latest one while it is fresh."""
        total = timedelta(0)
        for previous, sample in itertools.pairwise(self.samples):
            if sample.at <= start or previous.at >= now or sample.at - previous.at > self.stale:
                continue  # outside the span, or an outage: the broker did not answer
            if group in previous.live and group in sample.live:
                total += min(sample.at, now) - max(previous.at, start)
        latest = self.samples[-1] if self.samples else None
        if latest is not None and group in latest.live and now - latest.at <= self.stale:
            total += max(timedelta(0), now - max(latest.at, start))
        return total

    def first_at_or_after(self, at: datetime) -> Sample | None:
        return next((s for s in self.samples if s.at >= at), None)

    def caught_up(self, group: str, barrier: Offsets) -> bool:
        """Whether ``group`` has consumed past ``barrier`` on every partition, as last sampled."""
        return bool(self.samples) and _passed(self.samples[-1].committed.get(group, {}), barrier)


def _passed(committed: Offsets, target: Offsets) -> bool:
    return all(committed.get(tp, 0) >= end for tp, end in target.items())


class ProgressSampler:
    """Reads end offsets of ``topics`` and the progress of ``groups`` into ``progress``.

    Args:
        settings: Kafka's address.
        topics: The topics whose partitions are watched.
        groups: The consumer groups whose progress is watched.
        progress: Where samples go.
        clock: Now, in UTC.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Iterable[str],
        groups: Iterable[str],
        progress: ProgressLog,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.topics = sorted(set(topics))
        self.groups = sorted(set(groups))
        self.progress = progress
        self.clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._keys: dict[Position, Position] = {}  # one tuple per partition, shared by samples
        self._coordinators: dict[str, int] = {}  # group -> its coordinator's node id
        self._coordinators_found_at = 0.0

    def _key(self, tp: TopicPartition) -> Position:
        key = (tp.topic, tp.partition)
        return self._keys.setdefault(key, key)

    async def sample(self) -> Sample:
        """Read the broker once (partitions are listed on first use and after a failure)."""
        admin, consumer = await self._clients()
        if not self._partitions:
            self._partitions = await partitions_of(self.settings, self.topics)
        at = self.clock()
        ends = await consumer.end_offsets(self._partitions)
        offsets, described = await self._groups(admin)
        if any(g[0] for responses in described for r in responses for g in r.groups):
            # A coordinator moved (or is loading): look them up and read the groups again.
            self._coordinators = {}
            offsets, described = await self._groups(admin)
        # DescribeGroups: groups = [(error_code, group_id, state, protocol_type, protocol, members)]
        live = frozenset(
            g[1]
            for responses in described
            for r in responses
            for g in r.groups
            if g[0] == 0 and g[2] == "Stable" and len(g[5]) > 0
        )
        return Sample(
            at=at,
            ends={self._key(tp): end for tp, end in ends.items()},
            committed={
                group: {self._key(tp): m.offset for tp, m in found.items()}
                for group, found in zip(self.groups, offsets, strict=True)
            },
            live=live,
        )

    async def _groups(self, admin: AIOKafkaAdminClient) -> tuple[list[Any], list[Any]]:
        """Each group's committed offsets and its DescribeGroups responses, asked of its
        coordinator (looked up once every ``COORDINATOR_TTL_S``, not before every request)."""
        if not self._coordinators or time.monotonic() > (
            self._coordinators_found_at + COORDINATOR_TTL_S
        ):
            found = await asyncio.gather(*(admin.find_coordinator(g) for g in self.groups))
            self._coordinators = dict(zip(self.groups, found, strict=True))
            self._coordinators_found_at = time.monotonic()
        nodes = self._coordinators
        offsets = await asyncio.gather(
            *(
                admin.list_consumer_group_offsets(g, group_coordinator_id=nodes[g])
                for g in self.groups
            )
        )
        # One group per DescribeGroups request: aiokafka misreads a response of several.
        described = await asyncio.gather(
            *(
                admin.describe_consumer_groups([g], group_coordinator_id=nodes[g])
                for g in self.groups
            )
        )
        return list(offsets), list(described)

    async def run(self, stopping: asyncio.Event, interval_s: float) -> None:
        """Sample every ``interval_s`` until ``stopping`` is set; a failed reading is a gap."""
        failing = False
        while not stopping.is_set():
            try:
                async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                    self.progress.add(await self.sample())
                if failing:
                    log.info("progress sampling works again")
                failing = False
            except (TimeoutError, OSError, KafkaError) as exc:
                if not failing:
                    log.warning("progress sampling failed, deadlines wait: %r", exc)
                failing = True
                await self.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)
        await self.close()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**kafka_options(self.settings))
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**kafka_options(self.settings), enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        """Stop the clients (idempotent); the next sample starts them again."""
        admin, self._admin = self._admin, None
        consumer, self._consumer = self._consumer, None
        self._partitions = []
        self._coordinators = {}
        with contextlib.suppress(Exception):
            if consumer is not None:
                await consumer.stop()
            if admin is not None:
                await admin.close()
