"""Retrying a delivery that failed: which failures, how long to wait, where to wait.

:class:`RetryingDelivery` delivers one record in its own transaction. A transient failure (a
retryable :class:`~events.errors.ChoreoError`, or any error that is not invalid data or a
programming error) is retried with exponential backoff: the record is parked in the
:class:`RetryQueue` when the consumer has one, so the partition moves on, or retried in place
otherwise. A permanent failure, or the last allowed attempt, goes to the dead-letter topic,
and the handler's give-up hook, if any, records the failure as an event. A record whose
provider was not called (:class:`~events.errors.ProviderDeferred`: its circuit breaker is open
or its bulkhead full, see :mod:`events.breakers`) is parked for as long as the breaker says,
without spending an attempt: an outage of the provider dead-letters nothing.

:func:`redeliver_parked` is the loop that hands parked records back when they are due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import pydantic
from aiokafka import ConsumerRecord

from events.database import log_loop_failure
from events.delivery import Delivery
from events.dispatch import ConsumerStats, Pending
from events.dlq import DeadLetterSink
from events.errors import ChoreoError, ProviderDeferred
from events.interceptors import Attempt, DeliveryInterceptor
from events.model import Message
from events.router import HandlerResult, HandlerSpec
from events.settings import Settings

log = logging.getLogger("choreo.runtime")


class RetryQueue(Protocol):
    """Where records whose handler failed transiently wait for their next attempt."""

    async def park(
        self, consumer: str, record: ConsumerRecord, attempts: int, delay_s: float, error: str
    ) -> None: ...

    async def due(self, consumer: str, limit: int = 100) -> Sequence[Any]: ...

    async def done_unless_reparked(self, parked: Any) -> None: ...

    async def release(self, parked: Sequence[Any]) -> None: ...

    async def until_due(self, consumer: str, longest_s: float, stopping: asyncio.Event) -> None:
        """Wait while none of ``consumer``'s records is due: until the earliest one's due
        time, a record parked by this process meanwhile, ``stopping``, or ``longest_s``."""


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying may help: Choreo errors say so; invalid data and programming errors
    (pydantic validation, type and attribute errors) never pass on retry."""
    if isinstance(exc, ChoreoError):
        return exc.retryable
    return not isinstance(exc, pydantic.ValidationError | TypeError | AttributeError | KeyError)


def backoff(attempt: int, settings: Settings) -> float:
    """Seconds to wait after failed attempt ``attempt``: exponential, full jitter, capped."""
    ceiling = min(
        settings.handler_backoff_max_ms,
        settings.handler_backoff_initial_ms * 2 ** (attempt - 1),
    )
    return random.uniform(ceiling / 2, ceiling) / 1000


class RetryingDelivery:
    """Delivers one record alone through ``delivery``, retrying, dead-lettering, giving up.

    Args:
        name: the process, for log lines.
        group_id: the consumer group, the deliveries' dedupe key.
        delivery: makes a handler's outcome durable.
        settings: attempts and backoff.
        sink: where dead letters go.
        interceptors: the chain each attempt runs in.
        stats: the consumer's counters.
        queue: where transient failures wait; without one they are retried in place.
    """

    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        delivery: Delivery,
        settings: Settings,
        sink: DeadLetterSink,
        interceptors: DeliveryInterceptor,
        stats: ConsumerStats,
        queue: RetryQueue | None = None,
    ) -> None:
        self.name = name
        self.group_id = group_id
        self.delivery = delivery
        self.settings = settings
        self.sink = sink
        self.interceptors = interceptors
        self.stats = stats
        self.queue = queue

    async def deliver(self, item: Pending, attempt: int = 1) -> bool:
        """Deliver ``item`` in its own transaction, retrying; False if it was parked."""
        current = Attempt(self.group_id, item, attempt)
        return await self.interceptors.deliver(current, lambda: self._attempts(current))

    async def defer(self, item: Pending, deferral: ProviderDeferred, attempt: int = 1) -> None:
        """Park ``item`` for ``deferral.retry_after_s`` without trying it (its provider's
        breaker is open), its attempts untouched. Needs a retry queue."""
        current = Attempt(self.group_id, item, attempt)
        await self.interceptors.deliver(current, lambda: self._defer(current, deferral))

    async def _defer(self, attempt: Attempt, deferral: ProviderDeferred) -> bool:
        """Park the record for as long as ``deferral`` says, as the attempt before this one
        (so it is this attempt again when it comes back). Returns False: parked."""
        assert self.queue is not None, "deferring needs a retry queue"
        self.interceptors.deferred(attempt, deferral)
        self.stats.deferred += 1
        await self.queue.park(
            self.group_id,
            attempt.item.record,
            attempt.number - 1,
            deferral.retry_after_s,
            f"{type(deferral).__name__}: {deferral}",
        )
        return False

    async def _attempts(self, attempt: Attempt) -> bool:
        """Deliver; on a transient failure park the record (non-blocking) or, without a retry
        queue, back off in place. Returns False if the record was parked."""
        item, number = attempt.item, attempt.number
        started = time.perf_counter()
        while True:
            try:
                fresh = await self.delivery.deliver(self.group_id, item.message, item.handler)
            except asyncio.CancelledError:
                raise
            except ProviderDeferred as deferral:
                # Not this message's fault: wait without spending an attempt.
                if self.queue is not None:
                    return await self._defer(attempt, deferral)
                self.interceptors.deferred(attempt, deferral)
                self.stats.deferred += 1
                await asyncio.sleep(deferral.retry_after_s)
            except Exception as exc:
                max_attempts = getattr(exc, "max_attempts", self.settings.handler_max_attempts)
                final = not is_retryable(exc) or number >= max_attempts
                self.interceptors.failed(attempt, exc, final=final)
                if final:
                    await self._dead_letter(attempt, exc, number)
                    return True
                delay = backoff(number, self.settings)
                log.warning(
                    "%s: %s for %s of order %s failed (attempt %d/%d), retry in %.2fs: %s",
                    self.name,
                    item.handler.name,
                    attempt.event_type,
                    item.message.saga_key,
                    number,
                    max_attempts,
                    delay,
                    exc,
                )
                self.interceptors.retry_scheduled(attempt, number, delay)
                self.stats.retried += 1
                if self.queue is not None:
                    await self.queue.park(
                        self.group_id, item.record, number, delay, f"{type(exc).__name__}: {exc}"
                    )
                    return False
                number += 1
                await asyncio.sleep(delay)
            else:
                self.stats.delivered(attempt.event_type)
                elapsed_ms = (time.perf_counter() - started) * 1000
                self.interceptors.delivered(attempt, fresh is not False, elapsed_ms)
                return True

    async def _dead_letter(self, attempt: Attempt, error: BaseException, attempts: int) -> None:
        """Dead-letter the record, then let its handler record the failure as an event."""
        envelope = attempt.item.message.envelope
        letter = await self.sink.send(
            attempt.item.record,
            error,
            attempts=attempts,
            event_type=envelope.event_type,
            event_id=str(envelope.event_id),
        )
        self.stats.dead_lettered += 1
        self.interceptors.dead_lettered(attempt, letter, attempts)
        await self._give_up(attempt.item, error)

    async def _give_up(self, item: Pending, error: BaseException) -> None:
        """Run the handler's give-up hook, if any, so the failure itself becomes an event."""
        handler = item.handler
        hook = handler.on_give_up
        if hook is None:
            return

        async def record_failure(msg: Message[Any], context: Any) -> HandlerResult:
            return await hook(msg, error, context)

        spec = HandlerSpec(handler.event_type, handler.model, record_failure)
        try:
            await self.delivery.deliver(f"{self.group_id}:gave-up", item.message, spec)
        except Exception:
            log.exception("%s: give-up hook of %s failed", self.name, handler.name)


async def redeliver_parked(
    name: str,
    group_id: str,
    queue: RetryQueue,
    process: Callable[[ConsumerRecord, int], Awaitable[bool]],
    stopping: asyncio.Event,
    poll_interval_s: float,
    concurrency: int = 1,
    idle_poll_s: float = 1.0,
) -> None:
    """Hand parked records to ``process(record, attempt)`` when they are due, until
    ``stopping`` is set: up to ``concurrency`` keys at once, each key's records in due order.

    After a pass that claimed records it looks again in ``poll_interval_s``; after an empty one
    it waits for the queue's earliest due time or a record parked here, and looks at least
    every ``idle_poll_s`` (for other replicas' claims whose lease ran out): an idle process
    does not poll its queue ten times a second.
    """
    while not stopping.is_set():
        claimed: list[Any] = []
        unattempted: list[Any] = []
        try:
            claimed = list(await queue.due(group_id))
            unattempted = await _redeliver(name, claimed, queue, process, stopping, concurrency)
        except asyncio.CancelledError:
            raise
        except Exception:
            log_loop_failure(log, "%s: retry loop failed; trying again", name)
        # Claims not attempted (a stop, a failure) go back now rather than when their lease
        # ends; if the database is away, the lease hands them on.
        with contextlib.suppress(Exception):
            await queue.release(unattempted)
        if not claimed:
            try:
                await queue.until_due(group_id, idle_poll_s, stopping)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("%s: asking the retry queue when it is due failed", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), poll_interval_s)


async def _redeliver(
    name: str,
    claimed: Sequence[Any],
    queue: RetryQueue,
    process: Callable[[ConsumerRecord, int], Awaitable[bool]],
    stopping: asyncio.Event,
    concurrency: int,
) -> list[Any]:
    """Attempt ``claimed`` again, a key's records one after another in due order and up to
    ``concurrency`` keys at once; returns the claims not attempted.

    Concurrently, because a due record waiting behind other keys' attempts is Choreo's delay,
    yet a step deadline counts it as the participant's: under a backlog, one attempt after
    another put seconds between a record's attempts instead of the backoff's fraction of one.
    """
    by_key: dict[bytes | None, list[Any]] = {}
    for parked in claimed:
        by_key.setdefault(parked.record.key, []).append(parked)
    gate = asyncio.Semaphore(max(1, concurrency))
    unattempted: list[Any] = []

    async def attempt_key(records: list[Any]) -> None:
        async with gate:
            for done, parked in enumerate(records):
                if stopping.is_set():
                    unattempted.extend(records[done:])
                    return
                try:
                    await process(parked.record, parked.attempts + 1)
                    # Parked again (a newer row replaced it) or finished: either way this
                    # attempt is over; a finished record leaves the queue.
                    await queue.done_unless_reparked(parked)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log_loop_failure(
                        log, "%s: redelivering a parked record failed; trying again", name
                    )
                    unattempted.extend(records[done:])
                    return

    await asyncio.gather(*(attempt_key(records) for records in by_key.values()))
    return unattempted
