"""The replay engine (``choreo replay NAME``): rebuild one process's own PostgreSQL state from
the log.

A service (inventory, payment, shipping, crm, email, the saga coordinator: any
:class:`~events.service.Service`) whose tables were lost gets them back from the topics, which
keep everything forever, **without new side effects** (no second charge, mail or booking, no
message published) and **with the rows live processing produced**. The approach is Temporal's
deterministic replay: run the process's own handlers again, and wherever they touch the world,
answer from the recorded history.

The plan (which inputs, in which order, with which emission) is :mod:`events.replay.plan`'s;
this module drives it.

1. **Read the log**: every record of every event topic, up to its end as of now, per partition
   in offset order, and the process's dead letters. Records of the topics the process consumes
   with a handler are the *inputs*; records that do not decode are skipped (they are in the
   DLQ already), and so are event types without a handler. The messages the process itself
   emitted (``envelope.producer``) are grouped into *emissions*: one per cause and instant.
2. **Reset the schema**: drop it, migrate it (the process's DDL and the runtime tables), and run
   its ``on_start`` (inventory seeds its stock from the seed file).
3. **Deliver every input again** through :class:`~events.replay.delivery.ReplayDelivery`: the normal
   transaction with its inbox row (so a redelivery after the replay is still deduplicated), but
   nothing staged in the outbox. Around each message:

   - the clock is frozen (:func:`~events.model.frozen_clock`) at the instant the live run
     processed it, which is the ``occurred_at`` of what it emitted (a delivery processes its
     message at one instant); for a message that emitted nothing the log cannot tell, and the
     clock falls back to the message's own ``occurred_at``;
   - the process's provider is its replay provider (``services/<name>/replay.py``), which
     answers with what the live provider answered, as the message's emission records it
     (:mod:`events.replay.providers`);
   - what the handler returns is compared with the emission, event by event: a handler that
     emits something the live run did not is rolled back (a divergence, see below).

   Inputs run in the order the live run processed them, as far as the log tells it: messages
   with an emission at its instant (exact), the others at their ``occurred_at`` but never before
   the messages ahead of them in their partition occurred (a partition is processed in order).
   The decoded log is held in memory for this.
4. Messages the live run **dead-lettered** (``<prefix>dlq`` letters of the process's consumer
   group, matched by source topic/partition/offset) are dead in the replay too: their handler
   does not run; their give-up hook does if the handler has one (email's ``email.failed``),
   through the same delivery as live (consumer ``<group>:gave-up``), so its inbox row returns.
   A message retried and then handled is simply handled once; a duplicate (same event id) is
   skipped, as the inbox would.
5. A message that fails in the replay with a retryable error (``order.placed`` not seen yet, or
   :class:`~events.replay.providers.ReplayDivergence`: the log has no answer for the provider,
   or the handler emits what the live run did not, e.g. an approval that came after the refund
   live but sorts before it here) is rolled back and tried again after the order's next message,
   as the live runtime retries; what never succeeds is reported as divergent and not applied.

**Timers.** The coordinator is replayed by the same driver: its handlers fold and decide over
its ``saga_events`` as live. Its other input is time: durable timers
(:attr:`Service.timers <events.service.Service.timers>`, :class:`~events.process.Timers`)
fire with no message in the log, but whatever a firing decided shows up as an emission no
replayed handler explains (e.g. ``order.rejected`` by ``saga-coordinator`` at the approval
timeout, a compensation command at a deadline or an ack timeout, ``order.completed`` at the
email deadline): every firing that records a fact emits something. So when the timeline
reaches such an emission, the replay fires, through the process's timers, the order's timers
due by then (by due time, as the timer loop does), at that instant, keeping the firings whose
events are in the emission and rolling back the others (stale or not yet due live), until the
emission is explained. Firings that decided nothing leave no
trace and need none: the timer rows always converge to what the saga's state calls for.

What comes out identical, row for row: every state table of the five services (their handlers
that emit nothing record no clock time), every inbox row's key, and every row a delivery or a
timer firing that emitted something wrote, verified against the log. What cannot be, because
the log does not record it:

- the instant of a delivery that emitted nothing: its rows get the message's ``occurred_at``,
  never later than the live instant (the inbox ``processed_at`` of such messages; on the
  coordinator the ``recorded_at`` of observations that decided nothing, and for a saga still
  running the deadlines measured from them);
- on the coordinator, the order of such observations within a saga when they came from
  different topics (``shipment.scheduled`` and ``email.sent`` processed in the same poll): each
  takes the next ``seq``, so two facts can swap positions; the facts themselves, and the saga
  they fold to, are the same;
- a timer row's ``traceparent`` (a live span).

Logs written before deliveries froze the clock per message replay with divergences where a
handler's outputs straddle a millisecond.

The process must be stopped (:func:`consumer_group_members` tells whether its consumer group
still has members), its outbox must have been drained before its tables were lost (what was never
published is not in the log), and the replay must run with the process's configuration
(``CHOREO_SAGA_*`` for the coordinator): a different deadline shows up as divergences.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from events.codec import Codec
from events.dlq import DeadLetter
from events.errors import ContractError, PermanentError
from events.model import Event, Message, frozen_clock
from events.replay.delivery import ReplayDelivery
from events.replay.plan import Emission, Logged, Plan, Step, plan, remaining_after
from events.replay.providers import ReplayDivergence, replaying
from events.retries import is_retryable
from events.router import HandlerResult, HandlerSpec
from events.schemas import SchemaRegistry
from events.security import kafka_options
from events.service import Service, ServiceRuntime
from events.settings import Settings
from events.topics import event_topics, read_to_end

READ_TIMEOUT_S = 600.0
"""How long reading the log to its end may take."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: inputs replayed so far, of all inputs."""


# --------------------------------------------------------------------------- the report


@dataclass
class ReplayReport:
    """What a replay did."""

    process: str
    inputs: int = 0
    replayed: int = 0
    skipped: int = 0
    undecodable: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    give_up_hooks: int = 0
    timers_fired: int = 0
    retried: int = 0
    divergent: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    @property
    def exact(self) -> bool:
        """Every input replayed as it went live, and every emission explained."""
        return not self.divergent and not self.unexplained

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "messages": self.inputs,
            "replayed": self.replayed,
            "skipped_no_handler": self.skipped,
            "skipped_undecodable": self.undecodable,
            "skipped_duplicates": self.duplicates,
            "dead_lettered_skipped": self.dead_lettered,
            "give_up_hooks_replayed": self.give_up_hooks,
            "timers_fired": self.timers_fired,
            "retried": self.retried,
            "divergent": self.divergent,
            "unexplained_emissions": self.unexplained,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
        }


# --------------------------------------------------------------------------- the driver


async def consumer_group_members(settings: Settings, group: str) -> int:
    """How many consumers are in consumer group ``group`` (0: its process is not running; a
    killed process stays a member until its session times out)."""
    return (await consumer_group_sizes(settings, [group]))[group]


async def consumer_group_sizes(settings: Settings, groups: list[str]) -> dict[str, int]:
    """:func:`consumer_group_members` of each of ``groups``, over one admin connection.

    A group per request: aiokafka failed to decode one response describing several groups
    ("Buffer underrun decoding string").
    """
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        sizes = {}
        for group in groups:
            responses = await admin.describe_consumer_groups([group])
            # DescribeGroups: groups = [(error_code, group_id, state, protocol, ..., members)]
            sizes[group] = sum(len(g[5]) for response in responses for g in response.groups)
    finally:
        await admin.close()
    return sizes


async def replay_service(
    settings: Settings,
    service: Service[Any],
    *,
    progress: Progress | None = None,
    codec: Codec | None = None,
) -> ReplayReport:
    """Rebuild ``service``'s schema from the log (see the module docs); the process must be
    stopped.

    Args:
        settings: The shared settings (topic prefix, database, Kafka).
        service: The process as built for the replay (with its replay provider).
        progress: Called as inputs are replayed.
        codec: Decodes the log; loaded from ``settings.schemas_dir`` by default.
    """
    started = time.perf_counter()
    codec = codec or Codec(SchemaRegistry.load(settings.schemas_dir), service.router.catalog)
    report = ReplayReport(service.name)
    group = f"{settings.topic_prefix}{service.name}"
    topics = service.router.topics(settings)
    logged, report.undecodable = await _read_log(settings, codec, topics)
    dead = await _dead_letters(settings, group)
    the_plan = plan(logged, router=service.router, topics=topics, producer=service.name, dead=dead)
    report.inputs = the_plan.inputs + report.undecodable
    report.skipped = the_plan.skipped
    report.duplicates = the_plan.duplicates
    report.dead_lettered = the_plan.dead_lettered

    runtime = ServiceRuntime(service, settings, codec)
    try:
        await runtime.db.start()
        async with runtime.db.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {runtime.schema} CASCADE")
        await runtime.db.migrate(runtime.schema, *service.ddl)
        if service.on_start is not None:
            await service.on_start(runtime)
        await _Replayer(runtime, group, report, progress).run(the_plan)
    finally:
        await runtime.close()
    report.seconds = time.perf_counter() - started
    return report


async def _read_log(
    settings: Settings, codec: Codec, topics: Collection[str]
) -> tuple[list[Logged], int]:
    """Every decodable record of the event topics, and how many of the process's inputs did
    not decode."""
    logged: list[Logged] = []
    undecodable = 0
    async for record in read_to_end(settings, event_topics(settings), timeout_s=READ_TIMEOUT_S):
        try:
            message = codec.decode(record.value)
        except ContractError:
            if record.topic in topics:
                undecodable += 1
            continue
        position = (record.topic, record.partition, record.offset)
        logged.append(Logged(record.topic, record.partition, record.offset, message.at(position)))
    return logged, undecodable


async def _dead_letters(settings: Settings, group: str) -> dict[tuple[str, int, int], DeadLetter]:
    """The consumer group's dead letters by source (topic, partition, offset)."""
    letters: dict[tuple[str, int, int], DeadLetter] = {}
    async for record in read_to_end(settings, [settings.dlq_topic], timeout_s=READ_TIMEOUT_S):
        try:
            letter = DeadLetter.from_json(record.value or b"")
        except ValueError:
            continue  # a redrive marker, or nothing Choreo wrote
        if letter.consumer == group:
            letters[(letter.source_topic, letter.source_partition, letter.source_offset)] = letter
    return letters


class _NothingEmitted(Exception):
    """The handler emitted nothing, so the emission taken for its clock was another's."""


class _Mismatch(Exception):
    """A timer firing emitted what the emission being explained does not show."""


class DeadLettered(PermanentError):
    """The error a give-up hook gets in a replay: the dead letter's reason."""


class _Replayer:
    """Runs a :class:`Plan` against the reset schema."""

    def __init__(
        self,
        runtime: ServiceRuntime[Any],
        group: str,
        report: ReplayReport,
        progress: Progress | None,
    ) -> None:
        self.runtime = runtime
        self.group = group
        self.report = report
        self.progress = progress
        self.delivery: ReplayDelivery[Any] = ReplayDelivery(
            db=runtime.db,
            schema=runtime.schema,
            context_factory=runtime.context,
            producer_name=runtime.service.name,
            codec=runtime.codec,
            settings=runtime.settings,
            check=self._check,
        )
        self._expected: Emission | None = None
        self._strict = True
        self._produced: list[Event] = []
        self.deferred: dict[str, list[Step]] = defaultdict(list)
        self.done = 0
        self.total = 0

    async def run(self, the_plan: Plan) -> None:
        self.total = len(the_plan.steps)
        for item in the_plan.timeline:
            if isinstance(item, Emission):
                if item.owner is None:
                    await self._explain(item)
                continue
            if await self._attempt(item):
                await self._retry_deferred(item.message.saga_key)
            self._tick()
        for order_id in list(self.deferred):
            await self._retry_deferred(order_id)
        for steps in self.deferred.values():
            for step in steps:
                self.report.divergent.append(f"{step.describe()}: {step.error}")
                if step.emission is not None:
                    self.report.unexplained.append(step.emission.describe())
        self.deferred.clear()

    def _tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    async def _attempt(self, step: Step) -> bool:
        """Deliver ``step``; False if it failed (deferred, or divergent when not retryable)."""
        try:
            try:
                await self._deliver(step)
            except _NothingEmitted:
                # The emission was a timer firing's (coordinator): this input was processed
                # at some unknown earlier instant; replay it at its own occurred_at, then
                # explain the emission as what it is.
                emission, step.emission = step.emission, None
                try:
                    await self._deliver(step)
                finally:
                    if emission is not None:
                        emission.owner = None
                        await self._explain(emission)
        except Exception as exc:
            step.error = f"{type(exc).__name__}: {exc}"
            if is_retryable(exc):
                self.deferred[step.message.saga_key].append(step)
                self.report.retried += 1
            else:
                self.report.divergent.append(f"{step.describe()}: {step.error}")
            return False
        emission = step.emission
        if emission is not None and emission.events:
            # The rest was a timer firing's at the same instant (coordinator).
            emission.owner = None
            await self._explain(emission)
        return True

    async def _retry_deferred(self, order_id: str) -> None:
        """Try the order's deferred inputs again until none gets through."""
        while self.deferred.get(order_id):
            waiting = self.deferred.pop(order_id)
            succeeded = False
            for step in waiting:
                succeeded = await self._attempt(step) or succeeded
            if not succeeded:
                return

    async def _deliver(self, step: Step) -> None:
        message = step.message
        if step.dead is None:
            consumer, handler, self._strict = self.group, step.handler, True
        else:
            # As the runtime's give-up: the hook, through the delivery, as its own consumer.
            consumer, handler, self._strict = f"{self.group}:gave-up", _give_up(step), False
        self._expected = step.emission
        self._produced = []
        expected = step.emission.events if step.emission is not None else []
        try:
            with frozen_clock(step.at), replaying(message, expected):
                fresh = await self.delivery.deliver(consumer, message, handler)
        finally:
            self._expected = None
        if not fresh:
            self.report.duplicates += 1
            return
        if step.emission is not None:
            left = remaining_after(step.emission.events, self._produced, strict=self._strict)
            step.emission.events = left or []
        if step.dead is None:
            self.report.replayed += 1
        else:
            self.report.give_up_hooks += 1

    def _check(self, cause: Message[Event], produced: Sequence[Event]) -> None:
        """Inside the delivery's transaction: does the handler emit what the live run did?"""
        emission = self._expected
        if emission is not None and not produced:
            raise _NothingEmitted
        expected = emission.events if emission is not None else []
        if remaining_after(expected, produced, strict=self._strict) is None:
            kinds = ", ".join(e.event_type for e in produced)
            recorded = ", ".join(e.event_type for e in expected) or "nothing"
            raise ReplayDivergence(
                f"the handler emits {kinds}, not what the live run emitted for it ({recorded};"
                " compared field by field)"
            )
        self._produced = list(produced)

    async def _explain(self, emission: Emission) -> None:
        """An emission no replayed input explains: a timer firing's (coordinator), or a
        divergence."""
        if emission.events and self.runtime.service.timers is not None:
            await self._fire_timers(emission)
        if emission.events:
            self.report.unexplained.append(emission.describe())

    async def _fire_timers(self, emission: Emission) -> None:
        """Fire the process's timers of the emission's order due at its instant, keeping the
        firings whose events it shows, until it is explained."""
        timers = self.runtime.service.timers
        assert timers is not None
        pool = self.runtime.db.pool
        key = emission.order_id
        async with pool.acquire() as conn:
            pending = await timers.pending(self.runtime.context(conn), key)
        due = sorted((due_at, name) for name, due_at in pending.items() if due_at <= emission.at)
        for due_at, name in due:
            if not emission.events:
                return
            try:
                async with pool.acquire() as conn, conn.transaction():
                    with frozen_clock(emission.at):
                        messages = await timers.fire(self.runtime.context(conn), key, name, due_at)
                    emitted = [m.event for m in messages or ()]
                    left = remaining_after(emission.events, emitted)
                    if emitted and left is None:
                        raise _Mismatch  # not this firing, not now: roll it back
            except _Mismatch:
                continue
            if emitted and left is not None:
                emission.events = left
                self.report.timers_fired += 1


def _give_up(step: Step) -> HandlerSpec:
    """The give-up hook of ``step``'s handler as a handler, with the dead letter's error."""
    hook = step.handler.on_give_up
    assert hook is not None
    assert step.dead is not None
    error = DeadLettered(step.dead.reason)

    async def record_failure(message: Message[Any], context: Any) -> HandlerResult:
        return await hook(message, error, context)

    return HandlerSpec(step.handler.event_type, step.handler.model, record_failure)
