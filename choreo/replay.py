"""``choreo replay NAME``: rebuild one process's own PostgreSQL state from the log.

A service (inventory, payment, shipping, crm, email) or the saga coordinator whose tables were
lost gets them back from the topics, which keep everything forever, **without new side
effects** (no second charge, mail or booking, no message published) and **with the rows live
processing produced**. The approach is Temporal's deterministic replay: run the process's own
handlers again, and wherever they touch the world, answer from the recorded history.

1. **Read the log**: every record of every event topic, up to its end as of now, per partition
   in offset order, and the process's dead letters. Records of the topics the process consumes
   with a handler are the *inputs*; records that do not decode are skipped (they are in the
   DLQ already), and so are event types without a handler. The messages the process itself
   emitted (``envelope.producer``) are grouped into *emissions*: one per cause and instant.
2. **Reset the schema**: drop it, migrate it (the process's DDL and the runtime tables), and run
   its ``on_start`` (inventory seeds its stock from the seed file).
3. **Deliver every input again** through :class:`~events.postgres.ReplayDelivery`: the normal
   transaction with its inbox row (so a redelivery after the replay is still deduplicated), but
   nothing staged in the outbox. Around each message:

   - the clock is frozen (:func:`~events.model.frozen_clock`) at the instant the live run
     processed it, which is the ``occurred_at`` of what it emitted (a delivery processes its
     message at one instant); for a message that emitted nothing the log cannot tell, and the
     clock falls back to the message's own ``occurred_at``;
   - the process's provider is its replay provider (``services/<name>/replay.py``), which
     answers with what the live provider answered, as the message's emission records it
     (:mod:`events.replay`);
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
   :class:`~events.replay.ReplayDivergence`: the log has no answer for the provider, or the
   handler emits what the live run did not, e.g. an approval that came after the refund live
   but sorts before it here) is rolled back and tried again after the order's next message,
   as the live runtime retries; what never succeeds is reported as divergent and not applied.

**The coordinator** is replayed by the same driver: its handlers fold and decide over its
``saga_events`` as live. Its other input is time: durable timers fire with no message in the
log, but whatever a firing decided shows up as an emission no replayed handler explains (e.g.
``order.rejected`` by ``saga-coordinator`` at the approval timeout, a compensation command at a
deadline or an ack timeout, ``order.completed`` at the email deadline): every firing that
records a fact emits something. So when the timeline reaches such an emission, the replay
fires the saga's timers due by then (by due time, as the timer loop does), at that instant,
keeping the firings whose events are in the emission and rolling back the others (stale or
not yet due live), until the emission is explained. Firings that decided nothing leave no
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

The process must be stopped (:func:`group_members` tells whether its consumer group still has
members), its outbox must have been drained before its tables were lost (what was never
published is not in the log), and the replay must run with the process's configuration
(``CHOREO_SAGA_*`` for the coordinator): a different deadline shows up as divergences.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from aiokafka.admin import AIOKafkaAdminClient

from events.codec import Codec
from events.dlq import DeadLetter
from events.errors import ChoreoError, ContractError, PermanentError
from events.model import Event, Message, frozen_clock
from events.replay.delivery import ReplayDelivery
from events.replay.providers import ReplayDivergence, replaying
from events.retries import is_retryable
from events.router import HandlerResult, HandlerSpec, Router
from events.schemas import SchemaRegistry
from events.service import Service, ServiceRuntime
from events.settings import Settings
from events.topics import event_topics, read_to_end

COORDINATOR = "saga-coordinator"
PROCESSES = ("inventory", "payment", "shipping", "crm", "email", COORDINATOR)
"""What can be replayed; ``coordinator`` is accepted for ``saga-coordinator``."""

READ_TIMEOUT_S = 600.0
"""How long reading the log to its end may take."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: inputs replayed so far, of all inputs."""


class ReplayError(ChoreoError):
    """A replay cannot start (unknown process, the process still running, ...)."""


def process_name(name: str) -> str:
    """The process ``name`` stands for (``coordinator`` → ``saga-coordinator``)."""
    name = COORDINATOR if name == "coordinator" else name
    if name not in PROCESSES:
        raise ReplayError(f"cannot replay {name!r}; one of: {', '.join(PROCESSES)}, coordinator")
    return name


def build_for_replay(name: str, settings: Settings) -> Service[Any]:
    """Process ``name`` as a replay runs it: with its replay provider instead of the real one.

    Inventory has no external provider (its stock feed is read once, at start, from the seed
    file) and the coordinator none at all: both are built as they run live.
    """
    # Imported here: the CLI loads without importing every service.
    match process_name(name):
        case "inventory":
            from services.inventory.service import build as build_inventory

            return build_inventory(settings)
        case "payment":
            from services.payment.replay import ReplayGateway
            from services.payment.service import build as build_payment

            return build_payment(settings, provider=ReplayGateway())
        case "shipping":
            from services.shipping.replay import ReplayCarrier
            from services.shipping.service import build as build_shipping

            return build_shipping(settings, provider=ReplayCarrier())
        case "crm":
            from services.crm.replay import ReplayCrm
            from services.crm.service import build as build_crm

            return build_crm(settings, provider=ReplayCrm())
        case "email":
            from services.email.replay import ReplayMailer
            from services.email.service import build as build_email

            return build_email(settings, provider=ReplayMailer())
        case _:
            from saga_coordinator.service import build as build_coordinator

            return build_coordinator(settings)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Logged:
    """One decoded record of the log, and where it is."""

    topic: str
    partition: int
    offset: int
    message: Message[Event]


@dataclass(eq=False)
class Emission:
    """What the process emitted at one instant for one cause: one delivery's (or one timer
    firing's) messages, as the log shows them.

    ``events`` shrinks as replayed deliveries and timer firings explain it; ``owner`` is the
    input it is taken to be the emission of, until that input is replayed.
    """

    order_id: str
    cause_id: str | None
    at: datetime
    events: list[Event]
    owner: Step | None = None

    def describe(self) -> str:
        kinds = ", ".join(e.event_type for e in self.events)
        return f"order {self.order_id} at {self.at.isoformat()}: {kinds}"


@dataclass(eq=False)
class Step:
    """One input to deliver again.

    ``dead``: the live run dead-lettered it, so only its give-up hook runs. ``emission``: what
    the live run emitted for it, whose instant is the clock of the delivery; without one the
    clock is the message's ``occurred_at`` and ``position`` places it in the timeline.
    """

    logged: Logged
    handler: HandlerSpec
    dead: DeadLetter | None
    emission: Emission | None = None
    position: datetime | None = None
    error: str = ""

    @property
    def message(self) -> Message[Event]:
        return self.logged.message

    @property
    def at(self) -> datetime:
        """The instant the clock is frozen at while this input is replayed."""
        if self.emission is not None:
            return self.emission.at
        return self.message.envelope.occurred_at

    def describe(self) -> str:
        env = self.message.envelope
        where = f"{self.logged.topic}@{self.logged.partition}/{self.logged.offset}"
        return f"{env.event_type} {env.event_id} of order {env.order_id} ({where})"


@dataclass
class Plan:
    """The inputs and emissions of one process, in the order the live run processed them."""

    timeline: list[Step | Emission]
    inputs: int
    """Records of the process's topics (handled or not, decodable or not)."""
    skipped: int = 0
    """Records of event types the process has no handler for."""
    duplicates: int = 0
    """Records whose event id came before (the inbox skips them)."""
    dead_lettered: int = 0
    """Records the live run dead-lettered: not replayed (their give-up hooks are)."""

    @property
    def steps(self) -> list[Step]:
        return [item for item in self.timeline if isinstance(item, Step)]


def plan(
    logged: Iterable[Logged],
    *,
    router: Router[Any],
    topics: Collection[str],
    producer: str,
    dead: Mapping[tuple[str, int, int], DeadLetter],
) -> Plan:
    """Order the inputs of the process named ``producer`` and attach their emissions.

    Args:
        logged: Every decodable record of the event topics, in any order.
        router: The process's handlers.
        topics: The topics it consumes.
        producer: Its name in envelopes.
        dead: Its dead letters by source (topic, partition, offset).
    """
    records = sorted(logged, key=lambda r: (r.topic, r.partition, r.offset))
    emissions = _emissions(records, producer)
    by_cause: dict[str | None, list[Emission]] = defaultdict(list)
    for emission in sorted(emissions, key=lambda e: e.at):
        by_cause[emission.cause_id].append(emission)

    result = Plan(timeline=[], inputs=0)
    steps: list[Step] = []
    handled: set[uuid.UUID] = set()
    gave_up: set[uuid.UUID] = set()
    for record in records:
        if record.topic not in topics:
            continue
        result.inputs += 1
        handler = router.get(record.message.envelope.event_type)
        if handler is None:
            result.skipped += 1
            continue
        event_id = record.message.envelope.event_id
        letter = dead.get((record.topic, record.partition, record.offset))
        if letter is not None:
            result.dead_lettered += 1
            # Live, the hook ran once per event id (its inbox row dedupes a second one).
            if handler.on_give_up is not None and event_id not in gave_up:
                gave_up.add(event_id)
                steps.append(Step(record, handler, letter))
            continue
        if event_id in handled:
            result.duplicates += 1
            continue
        handled.add(event_id)
        steps.append(Step(record, handler, None))

    # Each delivery of a cause took the cause's next emission, in offset order.
    for step in steps:
        queue = by_cause.get(str(step.message.envelope.event_id))
        if queue:
            step.emission = queue.pop(0)
            step.emission.owner = step

    # A partition is processed in order: an input that emitted nothing was processed after the
    # ones ahead of it occurred (its own occurred_at is only a lower bound). Not after their
    # emissions' instants: on the coordinator an emission caused by an input can be a later
    # timer firing's, which would push the whole partition behind it.
    floors: dict[tuple[str, int], datetime] = {}
    keyed: list[tuple[tuple[datetime, int, str, int, int], Step | Emission]] = []
    for step in steps:
        tp = (step.logged.topic, step.logged.partition)
        occurred = step.message.envelope.occurred_at
        floor = max(occurred, floors.get(tp, occurred))
        floors[tp] = floor
        if step.emission is not None:
            step.position, rank = step.emission.at, 0
        else:
            step.position, rank = floor, 2
        keyed.append(((step.position, rank, *tp, step.logged.offset), step))
    # At one instant: the inputs processed then, then timer firings, then inputs that only
    # occurred then (processed then or later).
    keyed.extend(((e.at, 1, "", 0, i), e) for i, e in enumerate(emissions))
    keyed.sort(key=lambda pair: pair[0])
    result.timeline = [item for _, item in keyed]
    return result


def _emissions(records: Sequence[Logged], producer: str) -> list[Emission]:
    """The process's own messages, grouped by cause and instant (an outbox republished after
    a crash appears twice in the log: once counts)."""
    seen: set[uuid.UUID] = set()
    groups: dict[tuple[str, str | None, datetime], Emission] = {}
    for record in records:
        env = record.message.envelope
        if env.producer != producer or env.event_id in seen:
            continue
        seen.add(env.event_id)
        key = (env.order_id, env.causation_id, env.occurred_at)
        if key not in groups:
            groups[key] = Emission(env.order_id, env.causation_id, env.occurred_at, [])
        groups[key].events.append(record.message.event)
    return list(groups.values())


def remaining_after(
    expected: Sequence[Event], produced: Sequence[Event], *, strict: bool = True
) -> list[Event] | None:
    """``expected`` without the ``produced`` events, or None if one of them is not there.

    ``strict``: events must be equal field by field; otherwise the same type is enough.
    """
    left = list(expected)
    for event in produced:
        index = next(
            (
                i
                for i, candidate in enumerate(left)
                if (candidate == event if strict else type(candidate) is type(event))
            ),
            None,
        )
        if index is None:
            return None
        del left[index]
    return left


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


async def group_members(settings: Settings, process: str) -> int:
    """How many consumers are in the process's consumer group (0: it is not running; a killed
    process stays a member until its session times out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups(
            [f"{settings.topic_prefix}{process_name(process)}"]
        )
    finally:
        await admin.close()
    # DescribeGroups: groups = [(error_code, group_id, state, protocol_type, protocol, members)]
    return sum(len(group[5]) for response in responses for group in response.groups)


async def replay(
    settings: Settings,
    name: str,
    *,
    service: Service[Any] | None = None,
    progress: Progress | None = None,
    codec: Codec | None = None,
    require_stopped: bool = True,
) -> ReplayReport:
    """Rebuild process ``name``'s schema from the log (see the module docs).

    Args:
        settings: The shared settings (topic prefix, database, Kafka).
        name: inventory, payment, shipping, crm, email, saga-coordinator (or coordinator).
        service: The process as built for the replay; defaults to :func:`build_for_replay`
            (with the configuration from the environment).
        progress: Called as inputs are replayed.
        codec: Decodes the log; loaded from ``settings.schemas_dir`` by default.
        require_stopped: Refuse to run while the process's consumer group has members.

    Raises:
        ReplayError: unknown process, or the process is running.
    """
    process = process_name(name)
    if require_stopped and (members := await group_members(settings, process)):
        raise ReplayError(
            f"{process} is running ({members} member(s) in its consumer group); stop it first"
        )
    started = time.perf_counter()
    service = service or build_for_replay(process, settings)
    codec = codec or Codec(SchemaRegistry.load(settings.schemas_dir))
    report = ReplayReport(process)
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
        logged.append(Logged(record.topic, record.partition, record.offset, message))
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
            context_factory=runtime.service.context,
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
                await self._retry_deferred(item.message.order_id)
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
                self.deferred[step.message.order_id].append(step)
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
        if emission.events and self.runtime.service.name == COORDINATOR:
            await self._fire_timers(emission)
        if emission.events:
            self.report.unexplained.append(emission.describe())

    async def _fire_timers(self, emission: Emission) -> None:
        """Fire the saga's timers due at the emission's instant, keeping the firings whose
        events it shows, until it is explained."""
        from saga_coordinator.handlers import CoordinatorContext
        from saga_coordinator.store import Timer
        from saga_coordinator.timers import fire_timer

        pool = self.runtime.db.pool
        context = cast(Callable[[Any], CoordinatorContext], self.runtime.service.context)
        async with pool.acquire() as conn:
            timers = await context(conn).store.timers(emission.order_id)
        due = sorted((due_at, name) for name, due_at in timers.items() if due_at <= emission.at)
        for due_at, name in due:
            if not emission.events:
                return
            try:
                async with pool.acquire() as conn, conn.transaction():
                    with frozen_clock(emission.at):
                        messages = await fire_timer(
                            context(conn), Timer(emission.order_id, name, due_at)
                        )
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
