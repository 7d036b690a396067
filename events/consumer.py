"""Consuming Kafka: the generic poll loop, and the :class:`EventConsumer` every service runs.

:class:`PollLoop` joins a consumer group, polls, hands each poll to a processor, and commits
what the processor reports delivered (every ``consumer_commit_interval_ms``, even while a poll
is being processed; when the loop ends; for revoked partitions before a rebalance; see
:mod:`events.offsets`). Both the services' :class:`EventConsumer` and the projector run on it.

:class:`EventConsumer` is that loop with a :class:`~events.router.Router`'s handlers behind
it: it decodes and routes each record (:mod:`events.dispatch`) and hands it to a
:class:`~events.delivery.Delivery`, which decides how a handler's outcome becomes durable.
A partition's offset is committed only after every record before it was delivered or
dead-lettered, so nothing is lost; the records of one partition (one order's messages) are
processed in order. A delivery that can (:class:`~events.delivery.BatchDelivery`) takes a
whole poll in one transaction per lane (:mod:`events.batches`); any other gets one record at
a time, partitions concurrently, retried as :mod:`events.retries` says. Tracing, metrics and
log context wrap each delivery attempt as a chain of interceptors (:mod:`events.interceptors`).

A record that cannot be decoded, breaks the contract, or fails permanently goes to the
dead-letter topic with the reason; the loop moves on to the records behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from events.batches import Lanes, Poll
from events.breakers import ProviderGuards
from events.codec import Codec
from events.delivery import BatchDelivery, Delivery
from events.dispatch import ConsumerStats, Dispatcher
from events.dlq import DeadLetterSink
from events.fetch_pacing import ArrivalRate, FetchPacing, can_repace, repace
from events.interceptors import DEFAULT_INTERCEPTORS, Interceptor, chain
from events.offsets import CommitOnRevoke, OffsetCommits
from events.producer import EventProducer
from events.retries import RetryingDelivery, RetryQueue, redeliver_parked
from events.router import Router
from events.security import kafka_options
from events.settings import Settings
from events.stopping import STOP, end_within

log = logging.getLogger("choreo.runtime")

PollProcessor = Callable[[Poll], Awaitable[None]]
"""Processes one poll; reports what it delivered with :meth:`PollLoop.delivered`."""
Companion = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A task running beside the loop; returns once the event it is given is set."""


class PollLoop:
    """Polls ``topics`` as ``group_id`` and hands each poll to ``process``.

    Lifecycle: ``await start()``, ``await run()`` (until :meth:`stop`), ``await stop()``
    (idempotent; finishes the poll in hand and commits first). Also an async context manager.

    Args:
        name: the client id, and the name in log lines.
        group_id: the consumer group.
        topics: what to subscribe to.
        settings: Kafka address, poll timeout, session timeout, commit interval.
        process: the poll processor.
        max_records: the most records one poll returns.
        isolation_level: ``read_committed`` (the default) or ``read_uncommitted``.
        commit_failure_level: the log level of a failed commit.
        companions: tasks to run beside the loop, by name; stopped and awaited before it ends.
        pacing: whether the broker may hold a fetch to gather records
            (:mod:`events.fetch_pacing`): always (the projector, off the saga's path), only
            while records arrive fast (the saga's consumers), or never (the default).
    """

    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        topics: Sequence[str],
        settings: Settings,
        process: PollProcessor,
        max_records: int,
        isolation_level: str = "read_committed",
        commit_failure_level: int = logging.WARNING,
        companions: Mapping[str, Companion] | None = None,
        pacing: FetchPacing | None = None,
    ) -> None:
        self.name = name
        self.group_id = group_id
        self.topics = list(topics)
        self.settings = settings
        self.process = process
        self.max_records = max_records
        self.isolation_level = isolation_level
        self.companions = dict(companions or {})
        self.pacing = pacing or FetchPacing()
        self.arrivals: ArrivalRate | None = None
        self.stopping = asyncio.Event()
        self._commits = OffsetCommits(
            name, settings.consumer_commit_interval_ms, failure_level=commit_failure_level
        )
        self._next_offsets: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._running = False
        self._loop_done = asyncio.Event()
        self._loop_task: asyncio.Task[Any] | None = None
        # When the stop began waiting on the broker: its steps share the close timeout.
        self._closing_since: float | None = None

    @property
    def started(self) -> bool:
        return self._consumer is not None

    async def start(self) -> None:
        """Join the group; idempotent."""
        if self._consumer is not None:
            return
        self._closing_since = None  # a loop started again has its whole close timeout
        consumer = AIOKafkaConsumer(
            **kafka_options(self.settings),
            **self.pacing.options(holding=self.pacing.always),
            group_id=self.group_id,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=self.isolation_level,
            max_poll_records=self.max_records,
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=max(300, self.settings.consumer_session_timeout_ms // 4),
            # Range assignment gives each member of a group the same partition numbers of
            # every topic. Choreo's producers put an order's messages on one partition number
            # in every topic, so replicas of a process (`choreo run --replicas`) each get
            # whole orders and never work on one order at once; round robin would split an
            # order's topics between them. (Messages another partitioner spread still land
            # on two replicas; the handlers' per-order locks and the inbox keep that correct.)
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        consumer.subscribe(self.topics, listener=CommitOnRevoke(self._commits, consumer))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        if self.pacing.adaptive:
            if can_repace(consumer):
                self.arrivals = ArrivalRate(self.pacing)
            else:
                log.warning(
                    "%s: this aiokafka cannot hold fetches; each is answered at once",
                    self.name,
                )
        log.info("%s consuming %s as group %s", self.name, ", ".join(self.topics), self.group_id)

    async def __aenter__(self) -> PollLoop:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Poll, process and commit until :meth:`stop` is called."""
        await self.start()
        consumer = self._consumer
        assert consumer is not None
        self._running = True
        self._loop_done.clear()
        companions = [
            asyncio.create_task(companion(self.stopping), name=f"{self.name}:{name}")
            for name, companion in self.companions.items()
        ]
        if self.settings.consumer_commit_interval_ms > 0:
            companions.append(
                asyncio.create_task(self._commit_while_busy(consumer), name=f"{self.name}:commits")
            )
        # The polls run in a task of their own, which a stop that waited long enough cancels
        # (:meth:`_drain`) without cancelling whoever runs this loop.
        polls = self._loop_task = asyncio.create_task(
            self._poll(consumer), name=f"{self.name}:polls"
        )
        try:
            await polls
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():  # this loop itself was cancelled
                raise
        finally:
            if self._closing_since is None:  # else a drain that gave up started the clock
                self._closing_since = time.monotonic()
            if companions:
                self.stopping.set()
                # A commit the broker does not answer must not hold the stop past the close
                # timeout: what it would have committed is read again (see the setting).
                await end_within(companions, self._close_time_left(), self.name)
            await self._within_close_timeout(
                self._commits.flush(consumer, force=True), "the last offset commit"
            )
            self._running = False
            self._loop_done.set()

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        while not self.stopping.is_set():
            batch = await consumer.getmany(
                timeout_ms=self.settings.consumer_poll_timeout_ms,
                max_records=self.max_records,
            )
            await self._commits.flush(consumer)
            if self.arrivals is not None:
                self._pace(consumer, sum(map(len, batch.values())))
            if batch:
                await self.process(batch)

    def _pace(self, consumer: AIOKafkaConsumer, records: int) -> None:
        assert self.arrivals is not None
        holding = self.arrivals.observe(records)
        if holding is not None:
            repace(consumer, self.pacing.options(holding))
            log.debug(
                "%s: %s fetches (%.0f records/s)",
                self.name, "holding" if holding else "no longer holding", self.arrivals.per_s,
            )  # fmt: skip

    async def _commit_while_busy(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what is pending every interval even while a poll is being processed: one
        slow record must not hold back the offsets of the records delivered before it (a
        deadline's clock starts once the participant's group committed past them)."""
        interval_s = self.settings.consumer_commit_interval_ms / 1000
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval_s)
            await self._commits.flush(consumer)

    async def stop(self) -> None:
        """Finish the poll in hand (within the drain timeout), commit, leave the group. Safe
        to call twice."""
        self.stopping.set()
        if self._running:
            await self._drain()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await self._within_close_timeout(consumer.stop(), "leaving the group")

    async def _drain(self) -> None:
        """Let the loop finish the poll in hand, for at most ``stop_drain_timeout_ms``; then
        cancel it. A poll waits on the broker or the database (a commit, a publish the broker
        does not acknowledge, a lock), and a process that waits past its grace period is
        killed mid-stop. Cancelling is safe where a kill is: a delivery not committed
        rolls back and is read again after the restart, where the inbox drops what was
        delivered; what was committed and not yet published stays in the outbox."""
        drain_s = STOP.left(self.settings.stop_drain_timeout_ms / 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loop_done.wait(), drain_s)
            return
        task = self._loop_task
        if task is not None and not task.done():
            log.warning(
                "%s: the poll in hand did not end within %.1f s of the stop; cancelling"
                " it (what it did not commit is read again after the restart)",
                self.name, drain_s,
            )  # fmt: skip
            task.cancel()
        try:
            # Its cleanup may wait on what does not answer too (a rollback): then the stop
            # goes on without it, and the offsets it would have committed are read again.
            await asyncio.wait_for(self._loop_done.wait(), self._close_time_left())
        except TimeoutError:
            log.warning("%s: the poll in hand did not end when cancelled; leaving it", self.name)

    def _close_time_left(self) -> float:
        """Seconds left of the close timeout, which the close's steps share, within what is
        left of the stop's budget."""
        if self._closing_since is None:  # stopped without having run
            self._closing_since = time.monotonic()
        timeout_s = self.settings.consumer_close_timeout_ms / 1000
        return STOP.left(timeout_s - (time.monotonic() - self._closing_since))

    async def _within_close_timeout(self, step: Awaitable[None], what: str) -> None:
        """Await a step of the stop that waits on the broker (the last commit, leaving the
        group) within what is left of the close timeout, which the steps share as Kafka's own
        ``close(timeout)`` does: a broker that does not answer must not keep the process from
        exiting (its supervisor would kill it mid-stop). What is skipped is safe to skip (see
        the setting)."""
        left_s = self._close_time_left()
        try:
            await asyncio.wait_for(step, left_s)
        except TimeoutError:
            log.warning(
                "%s: %s did not end within the close timeout (%.1f s left of it); stopping"
                " without it",
                self.name, what, left_s,
            )  # fmt: skip

    async def delivered(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record that everything before ``offsets`` is delivered; committed to Kafka at most
        every ``consumer_commit_interval_ms`` (and when the loop ends)."""
        self._next_offsets.update(offsets)
        self._commits.add(offsets)
        await self._commits.flush(self._consumer)

    def lag(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, messages behind)`` of each assigned partition."""
        consumer = self._consumer
        if consumer is None:
            return []
        lags = []
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None and tp in self._next_offsets:
                lags.append((tp.topic, tp.partition, max(0, highwater - self._next_offsets[tp])))
        return lags


class EventConsumer:
    """Consumes a router's topics in a consumer group and delivers each message once or DLQs it.

    Lifecycle: ``await start()``, ``await run()`` (until :meth:`stop`), ``await stop()``
    (idempotent; finishes the batch in hand and commits it first). Also an async context
    manager that starts and stops.

    With a delivery that has ``batch`` (and ``consumer_batch_transactions`` on), each poll is
    delivered in ``lanes`` concurrent transactions (:class:`~events.batches.Lanes`); parked
    records of that many keys are retried at once.
    ``interceptors`` wrap every delivery attempt (default: log context, tracing, metrics).
    ``guards`` run the handlers that declare a provider behind its circuit breaker and
    bulkhead (:mod:`events.breakers`).
    """

    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        router: Router[Any],
        delivery: Delivery,
        codec: Codec,
        producer: EventProducer,
        settings: Settings,
        topics: Sequence[str] | None = None,
        retry_queue: RetryQueue | None = None,
        retry_poll_interval_s: float = 0.1,
        lanes: int = 1,
        interceptors: Sequence[Interceptor] = DEFAULT_INTERCEPTORS,
        guards: ProviderGuards | None = None,
    ) -> None:
        self.name = name
        self.group_id = group_id
        self.router = router
        self.delivery = delivery
        self.settings = settings
        self.retry_queue = retry_queue
        self.topics = list(topics) if topics is not None else router.topics(settings)
        self.stats = ConsumerStats()
        self.interceptors = chain(interceptors)
        self.sink = DeadLetterSink(name, group_id, producer, settings.dlq_topic)
        self.dispatcher = Dispatcher(router, codec, self.sink, self.stats, guards)
        self.single = RetryingDelivery(
            name=name, group_id=group_id, delivery=delivery, settings=settings, sink=self.sink,
            interceptors=self.interceptors, stats=self.stats, queue=retry_queue,
        )  # fmt: skip
        self.batches: Lanes | None = None
        if settings.consumer_batch_transactions and hasattr(delivery, "batch"):
            self.batches = Lanes(
                name=name, group_id=group_id, delivery=cast(BatchDelivery, delivery),
                lanes=lanes, dispatcher=self.dispatcher, single=self.single,
                interceptors=self.interceptors, stats=self.stats,
            )  # fmt: skip
        companions: dict[str, Companion] = {}
        if retry_queue is not None:
            companions["retries"] = functools.partial(
                redeliver_parked, name, group_id, retry_queue, self._process_record,
                poll_interval_s=retry_poll_interval_s, concurrency=lanes,
            )  # fmt: skip
        self.poller = PollLoop(
            name=name, group_id=group_id, topics=self.topics, settings=settings,
            process=self.process, max_records=settings.consumer_batch_size, companions=companions,
            pacing=FetchPacing(
                settings.consumer_fetch_wait_ms, settings.consumer_fetch_wait_above_per_s
            ),
        )  # fmt: skip

    async def start(self) -> None:
        if self.poller.started:
            return
        await self.poller.start()
        self.interceptors.consuming(self.group_id, self.poller.lag)

    async def __aenter__(self) -> EventConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Poll, process and commit until :meth:`stop` is called."""
        await self.start()
        await self.poller.run()

    async def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group. Safe to call twice."""
        started = self.poller.started
        await self.poller.stop()
        if started:
            log.info("%s stopped: %s", self.name, self.stats)

    async def process(self, poll: Poll) -> None:
        """The poll processor: deliver every record of ``poll``, then report its offsets."""
        if self.batches is not None:
            await self.poller.delivered(await self.batches.deliver(poll))
        else:
            await asyncio.gather(*(self._process_partition(tp, rs) for tp, rs in poll.items()))

    async def _process_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        for record in records:
            await self._process_record(record)
        await self.poller.delivered({tp: records[-1].offset + 1})

    async def _process_record(self, record: ConsumerRecord, attempt: int = 1) -> bool:
        """Decode, dispatch and deliver one record; returns False if it was parked for a retry."""
        item = await self.dispatcher.prepare(record, attempt)
        return True if item is None else await self.single.deliver(item, attempt)
