"""The faults a chaos run injects, one coroutine each, run by :class:`FaultInjector`.

Process faults act on the deployment's processes (:mod:`choreo.chaos.processes`); infra
faults on the local stack (:mod:`choreo.chaos.infra`); message faults publish to the
deployment's topics with a plain producer: re-sent records keep key, value, headers and
partition, and malformed values are remembered by topic, partition and offset, so the DLQ
check can find each one.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from choreo.chaos import infra
from choreo.chaos.orders import PlacedOrder
from choreo.chaos.plan import ChaosConfig, ScheduledFault
from choreo.chaos.processes import pick, platform_processes, send, wait_replaced
from choreo.chaos.returns import RETURN_SAGA, PlacedReturn
from choreo.client import ChoreoClient
from contracts.return_samples import scenario_return
from contracts.samples import scenario_order
from events.security import kafka_options
from events.settings import Settings
from events.topics import event_topics, read_to_end

Log = Callable[[str], None]
SINGLE_OBJECT_MARKER = b"\xc3\x01"


@dataclass(frozen=True)
class Injected:
    """A malformed value the run published: where it is in the log."""

    topic: str
    partition: int
    offset: int


@dataclass
class FaultResult:
    """What one fault did: when it started (seconds into the run), how long it took, and
    what went wrong injecting it (the platform's reaction is judged by the invariants)."""

    kind: str
    target: str
    at_s: float
    seconds: float = 0.0
    detail: str = ""
    error: str | None = None


@dataclass
class FaultInjector:
    """Runs a schedule of faults against one deployment (topic prefix of ``settings``)."""

    settings: Settings
    config: ChaosConfig
    client: ChoreoClient
    placed: list[PlacedOrder]
    log: Log
    returns: list[PlacedReturn] = field(default_factory=list)
    """The run's returns so far (the follower asks for them as their orders settle)."""
    injected: list[Injected] = field(default_factory=list)
    results: list[FaultResult] = field(default_factory=list)
    resent: int = 0
    retried: int = 0

    async def run(self, faults: list[ScheduledFault], started: float) -> None:
        """Inject each fault at its time (or as soon as the one before it is done)."""
        for fault in faults:
            delay = fault.at_s - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            result = FaultResult(fault.kind, fault.target, round(time.monotonic() - started, 1))
            self.log(f"fault: {fault.kind} {fault.target}".rstrip())
            began = time.monotonic()
            try:
                result.detail = await self._action(fault)()
            except Exception as exc:  # reported: a fault that could not be injected
                result.error = f"{type(exc).__name__}: {exc}"
                self.log(f"fault {fault.kind} {fault.target} failed: {result.error}")
            result.seconds = round(time.monotonic() - began, 1)
            self.results.append(result)

    def _action(self, fault: ScheduledFault) -> Callable[[], Awaitable[str]]:
        actions: dict[str, Callable[[], Awaitable[str]]] = {
            "kill": lambda: self.kill(fault.target),
            "stop": lambda: self.stop(fault.target),
            "broker": lambda: infra.restart_broker(
                self.settings, fault.target, self.config.broker_down_s, self.log
            ),
            "postgres": lambda: infra.restart_postgres(self.settings, self.log),
            "resend": self.resend,
            "malformed": self.malformed,
        }
        return actions[fault.kind]

    async def kill(self, name: str) -> str:
        """SIGKILL one instance of ``name``; wait for the supervisor to start another."""
        prefix, state_dir = self.settings.topic_prefix, self.settings.state_dir
        pid = await pick(prefix, state_dir, name)
        before = platform_processes(prefix, state_dir).get(name, [])
        send(pid, signal.SIGKILL)
        took = await wait_replaced(prefix, state_dir, name, before)
        return f"pid {pid} killed; replaced after {took:.1f}s"

    async def stop(self, name: str) -> str:
        """SIGSTOP one instance of ``name`` for ``stop_s`` (past its session timeout: its
        group rebalances without it), then SIGCONT (it finds itself fenced and rejoins)."""
        pid = await pick(self.settings.topic_prefix, self.settings.state_dir, name)
        send(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.config.stop_s)
        finally:
            send(pid, signal.SIGCONT)
        return f"pid {pid} stopped for {self.config.stop_s:.0f}s"

    async def resend(self) -> str:
        """Publish some logged records of this run's orders and returns again, byte for byte to
        the same partition, and place some orders (and ask for some returns) again under the
        same key with a new event id, as a client's retry."""
        ours = {order.order_id for order in self.placed} | {r.return_id for r in self.returns}
        logged = [
            record
            async for record in read_to_end(self.settings, event_topics(self.settings))
            if record.key is not None and record.key.decode(errors="replace") in ours
        ]
        rng = random.Random(self.config.seed)
        chosen = rng.sample(logged, min(self.config.resend, len(logged)))
        producer = AIOKafkaProducer(**kafka_options(self.settings), enable_idempotence=True)
        await producer.start()
        try:
            for record in chosen:
                await producer.send_and_wait(
                    record.topic,
                    record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=record.partition,
                )
        finally:
            await producer.stop()
        self.resent += len(chosen)
        retries = rng.sample(
            list(self.placed), min(self.config.resend, len(self.placed) // 10, len(self.placed))
        )
        for order in retries:
            await self.client.place_order(scenario_order(order.scenario), order.order_id)
        asked = list(self.returns)  # the follower appends meanwhile
        again = rng.sample(asked, min(self.config.resend, len(asked) // 10))
        for ret in again:
            requested = scenario_return(ret.scenario, ret.order_id)
            await self.client.start_saga(RETURN_SAGA, requested, ret.return_id)
        self.retried += len(retries) + len(again)
        return (
            f"{len(chosen)} records re-sent byte for byte, {len(retries)} orders placed and"
            f" {len(again)} return(s) asked for again"
        )

    async def malformed(self) -> str:
        """On every domain topic: a value that is not single-object Avro, and one that names
        a schema fingerprint nobody has."""
        producer = AIOKafkaProducer(**kafka_options(self.settings))
        await producer.start()
        try:
            for topic in event_topics(self.settings):
                for value in (
                    b"chaos: not an event " + uuid.uuid4().hex.encode(),
                    SINGLE_OBJECT_MARKER + os.urandom(8) + b"chaos: unknown fingerprint",
                ):
                    meta = await producer.send_and_wait(
                        topic, value, key=f"chaos-{uuid.uuid4().hex[:8]}".encode()
                    )
                    self.injected.append(Injected(topic, meta.partition, meta.offset))
        finally:
            await producer.stop()
        return f"{len(self.injected)} malformed values on {len(event_topics(self.settings))} topics"
