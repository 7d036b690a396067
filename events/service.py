"""What a Choreo process is, and the runtime that runs one.

A service module builds a :class:`Service` from the settings: its name, its router of handlers,
its own tables, how to build a handler's context from a transaction's connection and its
schema, and its durable timers if it has any. The
:class:`ServiceRuntime` does everything else, the same way for every process: the PostgreSQL
schema and migrations, the consumer group, transactional delivery (inbox, state, outbox), the
outbox relay, the circuit breakers and bulkheads of the providers its handlers declare (and
their rows in PostgreSQL), background tasks, tracing, logging, and a graceful stop on SIGTERM.
:func:`run_process` is the entry point every long-lived process (services, the projector)
starts through.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

try:  # not on Windows (pyproject's marker): there the standard library's loop runs
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

from events import metrics, tracing
from events.breaker_board import BreakerBoard
from events.breakers import ProviderGuards
from events.codec import Codec
from events.consumer import EventConsumer
from events.database import Connection, Database, schema_name
from events.delivery import BatchScope, TransactionalDelivery
from events.logs import configure_logging
from events.model import Event, Message
from events.outbox import OutboxRelay, stage
from events.producer import EventProducer, to_record
from events.retry_queue import PostgresRetryQueue
from events.router import Router
from events.schemas import SchemaRegistry
from events.settings import Settings
from events.stopping import BACKSTOP_MARGIN_S, STOP, end_cancelled, end_within, watch_stop
from events.topics import provision_topics

log = logging.getLogger("choreo.service")

C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)


class Timers(Protocol[C_contra]):
    """A process's durable timers: what it does when time passes, with no message in the log.

    The process fires them live (its own background loop); a replay (``choreo replay``)
    finds their firings in the log as emissions no input explains, and fires them again
    through this interface, each in the transaction of the context it is given.
    """

    async def pending(self, context: C_contra, key: str) -> Mapping[str, datetime]:
        """The timers set for ``key`` (an order id): when each is due, by name."""
        ...

    async def fire(
        self, context: C_contra, key: str, name: str, due_at: datetime
    ) -> Sequence[Message[Event]] | None:
        """Fire timer ``name`` of ``key``; the messages to emit, or None if it cannot fire now
        (another transaction holds the key)."""
        ...


@dataclass(frozen=True)
class Service(Generic[C]):
    """The definition of one process.

    Attributes:
        name: ``inventory``, ``payment``, ..., ``saga-coordinator``; names the consumer group
            (``<prefix><name>``), the PostgreSQL schema
            (:func:`~events.database.schema_name`) and the OTel ``service.name``.
        router: the handlers.
        context: builds a handler's context from the transaction's connection and the
            process's schema (the runtime's: the service does not name it).
        ddl: the service's own tables; ``{schema}`` stands for its schema.
        on_start: runs once after migrations (e.g. seed stock from a file).
        background: long-running tasks beside the consumer (e.g. the coordinator's timers);
            each gets the runtime and must return when ``runtime.stopping`` is set.
        lanes: concurrent transactions per poll (:class:`~events.consumer.EventConsumer`);
            more than 1 only where handlers touch no row that another order's handler does.
        timers: the process's durable timers, for a replay to fire (the coordinator's); a
            background task fires them live.
        batch_scope: given, a poll's lane is handled with one context for its transaction,
            and its handlers run inside ``batch_scope(context, messages)`` with the lane's new
            messages (:class:`~events.delivery.TransactionalDelivery`; the coordinator reads
            all their sagas in one round trip, and records its decisions in another).
    """

    name: str
    router: Router[C]
    context: Callable[[Connection, str], C]
    ddl: Sequence[str] = ()
    on_start: Callable[[ServiceRuntime[C]], Awaitable[None]] | None = None
    background: Sequence[Callable[[ServiceRuntime[C]], Coroutine[Any, Any, None]]] = field(
        default=()
    )
    lanes: int = 1
    timers: Timers[C] | None = None
    batch_scope: BatchScope[C] | None = None


class ServiceRuntime(Generic[C]):
    """Runs one :class:`Service`: ``await start()``, ``await run()``, ``await stop()``."""

    def __init__(self, service: Service[C], settings: Settings, codec: Codec | None = None) -> None:
        self.service = service
        self.settings = settings
        self.codec = codec or Codec(
            SchemaRegistry.load(settings.schemas_dir), service.router.catalog
        )
        self.schema = schema_name(settings, service.name)
        self.db = Database(settings)
        self.producer = EventProducer(settings, self.codec, client_id=service.name)
        self.relay = OutboxRelay(
            self.db,
            self.schema,
            self.producer,
            publish_after_commit=settings.outbox_publish_after_commit,
            send_spans=settings.tracing_send_spans,
        )
        self.delivery: TransactionalDelivery[C] = TransactionalDelivery(
            db=self.db,
            schema=self.schema,
            context_factory=self.context,
            producer_name=service.name,
            codec=self.codec,
            settings=settings,
            relay=self.relay,
            batch_scope=service.batch_scope,
        )
        self.guards = ProviderGuards(service.router.providers)
        self.board = BreakerBoard(self.db, settings, service.name, self.guards)
        self.consumer = EventConsumer(
            name=service.name,
            group_id=f"{settings.topic_prefix}{service.name}",
            router=service.router,
            delivery=self.delivery,
            codec=self.codec,
            producer=self.producer,
            settings=settings,
            retry_queue=PostgresRetryQueue(self.db, self.schema),
            lanes=service.lanes,
            guards=self.guards or None,
        )
        self.stopping = asyncio.Event()
        self._started = False

    def context(self, conn: Connection) -> C:
        """A handler's (or a timer's) context on ``conn``, in this process's schema."""
        return self.service.context(conn, self.schema)

    async def start(self) -> None:
        if self._started:
            return
        await provision_topics(self.settings)
        await self.db.start()
        await self.db.migrate(self.schema, *self.service.ddl)
        if self.guards:
            await self.board.start()
            metrics.observe_breakers(self.guards.states)
        await self.producer.start()
        if self.service.on_start is not None:
            await self.service.on_start(self)
        await self.consumer.start()
        self._started = True

    async def run(self) -> None:
        """Consume, relay and run background tasks until :meth:`stop`."""
        await self.start()
        name = self.service.name
        tasks = [
            asyncio.create_task(self.consumer.run(), name=f"{name}:consumer"),
            asyncio.create_task(self.relay.run(), name=f"{name}:relay"),
            *(
                [asyncio.create_task(self.board.run(self.stopping), name=f"{name}:breakers")]
                if self.guards
                else []
            ),
            *(
                asyncio.create_task(task(self), name=f"{name}:{task.__name__}")
                for task in self.service.background
            ),
        ]
        stop_wait = asyncio.create_task(self.stopping.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.stopping.set()
            stop_wait.cancel()
            try:
                await self.consumer.stop()
                await self.relay.stop()
                await end_within(tasks, self.settings.stop_drain_timeout_ms / 1000, name)
            except BaseException:
                # Cancelled itself (its stop's budget spent) or failed before its tasks ended:
                # they end before the producer and the pool close under them.
                unended = [task for task in tasks if not task.done()]
                for task in unended:
                    task.cancel()
                await end_cancelled(unended, name)
                raise
            log.info(
                "%s published %d messages, %d right after their commits (%d batches left to"
                " the relay)",
                name,
                self.relay.published,
                self.relay.published_after_commit,
                self.relay.left_to_relay,
            )

    async def stop(self) -> None:
        """Ask :meth:`run` to finish; idempotent. Closes connections when nothing runs."""
        self.stopping.set()

    async def close(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.db.stop()

    async def emit(self, conn: Connection, messages: Sequence[Message[Event]]) -> None:
        """Stage messages in the outbox inside the caller's transaction (for background
        tasks such as timers, which emit outside a handler); the relay publishes them."""
        await stage(conn, self.schema, [to_record(m, self.codec, self.settings) for m in messages])
        self.relay.wake()


P = TypeVar("P", bound="Process")


class Process(Protocol):
    """A long-lived part that :func:`run_process` runs: ``start``, ``run`` until ``stop``,
    then ``close`` (each safe to call twice)."""

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...

    async def close(self) -> None: ...


async def _stop_within_budget(name: str, process: Process, running: asyncio.Task[None]) -> None:
    """Stop ``process`` and wait for its run to end, for at most what is left of the stop's
    budget, then cancel the run: the runtime's own steps are bounded, so this is the backstop
    for a process's own. Raises what made the run end early, if anything."""
    # A little past the budget: the runtime's steps each get at least a moment, so they may
    # overrun it by a little; this is for a step that is not bounded at all.
    budget = asyncio.timeout(STOP.left(float("inf")) + BACKSTOP_MARGIN_S)
    try:
        async with budget:
            await process.stop()
            await asyncio.wait([running])  # not cancelled with this wait, unlike an await
    except TimeoutError:
        if not budget.expired():
            raise
    if budget.expired():
        log.warning("%s did not stop within its stop timeout; cancelling what is left", name)
        running.cancel()
        await end_cancelled([running], name)
        if not running.done() or running.cancelled():
            return
    await running  # raises what made it end early, if anything


def run_process(
    name: str,
    settings: Settings,
    build: Callable[[], P],
    *,
    ready: Callable[[P], str],
    summary: Callable[[P], str] | None = None,
) -> None:
    """Entry point of a Choreo process: run until SIGTERM/SIGINT, then drain and exit.

    Configures logging and tracing as ``name``, builds the process inside the event loop,
    starts it, logs ``"<name> ready: <ready(process)>"`` (what ``choreo run`` waits for),
    runs it until a signal asks it to stop, stops and closes it, and flushes the traces.

    Args:
        name: the process's name: log lines, ``service.name`` of its spans.
        settings: the platform settings.
        build: makes the process (called once, inside the event loop).
        ready: what the process does, for the ready line.
        summary: appended to the stopped line, e.g. how much it did.
    """
    configure_logging(name, settings)
    tracing.configure_telemetry(name, settings)
    tune_collector(settings)

    async def main() -> None:
        process = build()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("%s starting", name)
        reporting: asyncio.Task[None] | None = None
        try:
            await process.start()
            # What start built (modules, schemas, models, pools) lives as long as the
            # process: out of the collector's way, no collection traverses it again.
            gc.freeze()
            log.info("%s ready: %s", name, ready(process))
            running = asyncio.create_task(process.run(), name=f"{name}:run")
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([running, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            reporting = watch_stop(name, settings.stop_report_s, signalled=stop.is_set())
            STOP.begin(settings.stop_timeout_ms / 1000, name)
            await _stop_within_budget(name, process, running)
        finally:
            try:
                await process.close()
            finally:
                if reporting is not None:
                    reporting.cancel()
            log.info("%s stopped%s", name, f" {summary(process)}" if summary else "")

    try:
        with asyncio.Runner(loop_factory=event_loop_factory(settings)) as runner:
            runner.run(main())
    finally:
        tracing.shutdown_telemetry()
        STOP.reset()  # exited in time: the last resort stands down


def tune_collector(settings: Settings) -> None:
    """Run the cyclic garbage collector's young generation every ``gc_young_objects``
    allocations instead of Python's 700.

    A poll's records, models and spans are freed by reference counting; the collector only
    finds cycles. At 700 it ran every few messages and traversed the batch's live objects
    each time: 5-12% of a process's CPU under load (``py-spy --native``). Cycles are still
    collected, later.
    """
    if settings.gc_young_objects > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(settings.gc_young_objects, middle, old)


def event_loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes a process's event loop: uvloop's (``CHOREO_EVENT_LOOP=uvloop``, the default,
    where uvloop is installed) or None, the standard library's."""
    if settings.event_loop == "uvloop" and uvloop is not None:
        return uvloop.new_event_loop
    return None


def run_service(build: Callable[[Settings], Service[Any]], settings: Settings) -> None:
    """Entry point of a service process: run until SIGTERM/SIGINT, then drain and exit."""
    service = build(settings)
    run_process(
        service.name,
        settings,
        lambda: ServiceRuntime(service, settings),
        ready=lambda runtime: f"consuming {', '.join(runtime.consumer.topics)}",
    )
