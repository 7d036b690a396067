"""Circuit breakers and bulkheads in front of the external providers handlers call.

A handler declares the provider it calls (``@router.on(OrderApproved, provider="gateway")``);
the runtime then runs it through that provider's :class:`ProviderGuard`, one per provider and
process:

- a **circuit breaker** (:class:`CircuitBreaker`): *closed*, calls go through; once
  ``failure_threshold`` different messages have failed in a row (a
  :class:`~events.errors.ProviderUnavailable`, a timeout included) within ``window_s`` it
  *opens*: for ``cool_down_s`` no call is made and the messages wait in the retry queue
  (:class:`~events.errors.ProviderDeferred`, which spends none of their attempts, so an outage
  dead-letters nothing); then it is *half-open*: ``half_open_probes`` messages go through as
  probes, the others wait a little; a probe that succeeds closes it, one that fails opens it
  again (and waits like the rest, without spending an attempt). Failures are counted per
  message, not per call: one message that always fails (a card whose gateway never answers)
  cannot open it; it runs out of attempts and is dead-lettered as before. Nor can such
  messages keep it open: a probe that had already failed since the provider last answered
  says more about itself than about the provider, so its failure hands the probe to another
  message (it waits, and is no probe again in that half-open spell). At most
  ``failure_threshold`` probes are passed over so in a spell; the next failure opens it, so
  an outage costs a bounded number of calls per cool-down.
- a **bulkhead** (:class:`Bulkhead`): at most ``concurrency`` calls are inside the provider
  at once (:func:`events.providers.within`, which every provider call goes through, takes a
  slot of the guard of the handler it runs in, for the call alone); a delivery that gets no
  slot within ``queue_wait_ms`` waits in the retry queue instead, so a slow provider cannot
  hold every lane of the process while the other handlers' messages queue behind it.

Any outcome other than a provider failure (a success, a declined card, a message that is not
ready yet) counts as a success if the handler returned and as nothing if it raised.

Each provider is configured by ``CHOREO_BREAKER_*`` (:class:`BreakerSettings`), overridden per
provider by ``CHOREO_BREAKER_<PROVIDER>_*`` (e.g. ``CHOREO_BREAKER_GATEWAY_COOL_DOWN_S=10``).
Transitions are logged once each and counted in ``choreo.breaker.transitions``; the state is a
gauge (``choreo.breaker.state``) and a row per process and provider in PostgreSQL
(:mod:`events.breaker_board`), which ``choreo breakers`` and the API's ``/breakers`` read. A
test or a demo can make a provider's calls fail at a rate for a while
(:attr:`ProviderGuard.fault_rate`, set from the ``provider_faults`` table while the process
runs).

Written here rather than taken from PyPI: none of pybreaker 1.4, purgatory 3.0 (asyncio),
circuitbreaker 2.1 or aiobreaker (unmaintained since 2021) counts failures per message within a
time window, tells a half-open probe's failure from another call's, or says how long a refused
call should wait, which parking a message in the retry queue without spending an attempt
needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events import metrics
from events.errors import ProviderDeferred, ProviderUnavailable
from events.model import Message
from events.router import HandlerResult, HandlerSpec

log = logging.getLogger("choreo.breakers")

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic``; a test passes its own)."""

_current: contextvars.ContextVar[ProviderGuard | None] = contextvars.ContextVar(
    "choreo_provider_guard", default=None
)
"""The guard of the handler running in this task (set by :meth:`ProviderGuard.call`)."""


def current_guard() -> ProviderGuard | None:
    """The guard of the provider the running handler declared, if any: a provider call
    (:func:`events.providers.within`) takes its bulkhead slot and suffers its injected faults."""
    return _current.get()


class BreakerState(StrEnum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def level(self) -> int:
        """The gauge value: 0 closed, 1 half-open, 2 open."""
        return list(BreakerState).index(self)


class BreakerSettings(BaseSettings):
    """One provider's breaker and bulkhead, from ``CHOREO_BREAKER_*`` (every provider) and
    ``CHOREO_BREAKER_<PROVIDER>_*`` (one provider; see :meth:`for_provider`)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_BREAKER_", extra="ignore", frozen=True)

    failure_threshold: int = Field(
        default=5, ge=1, description="Different messages failing in a row that open it."
    )
    window_s: float = Field(
        default=10.0, gt=0, description="Failures older than this are forgotten."
    )
    cool_down_s: float = Field(
        default=5.0, gt=0, description="How long it stays open before a probe is let through."
    )
    half_open_probes: int = Field(
        default=1, ge=1, description="Messages let through at once while half-open."
    )
    concurrency: int = Field(
        default=2, ge=1, description="Bulkhead: calls inside the provider at once."
    )
    queue_wait_ms: int = Field(
        default=100, ge=0, description="How long a call waits for a bulkhead slot."
    )
    busy_retry_ms: int = Field(
        default=200,
        ge=1,
        description="How long a message waits when the provider is busy (bulkhead full, or a"
        " probe in flight) before it is tried again (up to twice that, jittered).",
    )

    @classmethod
    def for_provider(cls, provider: str) -> BreakerSettings:
        """The settings of ``provider``: ``CHOREO_BREAKER_<PROVIDER>_*`` over
        ``CHOREO_BREAKER_*`` over the defaults."""
        shared = cls()
        own = cls(_env_prefix=f"CHOREO_BREAKER_{provider.upper()}_")
        return shared.model_copy(update={name: getattr(own, name) for name in own.model_fields_set})


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker changed state."""

    provider: str
    old: BreakerState
    new: BreakerState
    reason: str


class CircuitBreaker:
    """The state machine of one provider's breaker (see the module docs). Not thread-safe:
    it lives in one event loop, and no method awaits.

    :meth:`admit` before a call (raises :class:`ProviderDeferred` when refused; returns whether
    the call is a half-open probe), then exactly one of :meth:`succeeded`, :meth:`failed` or
    :meth:`released` with what :meth:`admit` returned.
    """

    def __init__(
        self,
        provider: str,
        config: BreakerSettings,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.provider = provider
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_transition = on_transition
        self.state = BreakerState.CLOSED
        self.since = datetime.now(UTC)
        """Wall-clock time of the last transition (for people; the machine uses ``clock``)."""
        self.opened = 0
        """How often it opened since the process started."""
        self.last_error: str | None = None
        self._failing: dict[str, float] = {}
        """Message key → when it last failed, since the last success, within the window."""
        self._suspects: set[str] = set()
        """Messages that failed since the provider last answered (kept while it is open)."""
        self._passed_over: set[str] = set()
        """Suspects whose probe failed in this half-open spell: no probe again in it."""
        self._opened_at = 0.0
        self._probes = 0

    @property
    def failures(self) -> int:
        """Different messages failing in a row within the window, as of now."""
        self._forget_old(self.clock())
        return len(self._failing)

    def retry_after(self) -> float | None:
        """If it is open and its cool-down not over, how long a message should wait
        (jittered); None when a call could be let through now. Changes nothing."""
        if self.state is not BreakerState.OPEN:
            return None
        remaining = self._opened_at + self.config.cool_down_s - self.clock()
        if remaining <= 0:
            return None
        # Spread the waiting messages so that they come back one after another, not at once.
        return remaining + self.rng.uniform(0, self.config.cool_down_s / 2)

    def admit(self, key: str) -> bool:
        """Let a call for message ``key`` through, or raise :class:`ProviderDeferred`.
        Returns True if the call is a half-open probe."""
        wait = self.retry_after()
        if wait is not None:
            raise ProviderDeferred(self.provider, wait, "circuit open")
        if self.state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN, "cool-down over; probing")
        if self.state is BreakerState.HALF_OPEN:
            if self._probes >= self.config.half_open_probes or key in self._passed_over:
                raise ProviderDeferred(self.provider, self.busy_wait(), "probe in flight")
            self._probes += 1
            return True
        return False

    def busy_wait(self) -> float:
        """How long a message waits when the provider is busy: ``busy_retry_ms`` to twice that."""
        return self.config.busy_retry_ms / 1000 * self.rng.uniform(1, 2)

    def succeeded(self, probe: bool) -> None:
        """The admitted call worked: the provider answers."""
        self._release(probe)
        if probe and self.state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED, "the probe succeeded")
        if self.state is BreakerState.CLOSED:
            self._failing.clear()
            self._suspects.clear()

    def failed(self, probe: bool, key: str, error: BaseException) -> None:
        """The admitted call for message ``key`` failed with a provider failure."""
        self._release(probe)
        self.last_error = f"{type(error).__name__}: {error}"[:500]
        now = self.clock()
        if probe and self.state is BreakerState.HALF_OPEN:
            if key in self._suspects and len(self._passed_over) < self.config.failure_threshold:
                self._passed_over.add(key)  # it failed before: another message probes
            else:
                self._suspects.add(key)
                self._open(now, f"the probe failed: {self.last_error}")
        elif self.state is not BreakerState.CLOSED:
            self._suspects.add(key)  # admitted before it opened
        else:
            self._failing.pop(key, None)  # keep the dict in time order: newest last
            self._failing[key] = now
            self._forget_old(now)
            if len(self._failing) >= self.config.failure_threshold:
                self._open(
                    now,
                    f"{len(self._failing)} messages failed in a row within"
                    f" {self.config.window_s:g}s (last: {self.last_error})",
                )

    def released(self, probe: bool) -> None:
        """The admitted call ended with no verdict on the provider (the handler raised
        something else, or never got to call it)."""
        self._release(probe)

    def _release(self, probe: bool) -> None:
        if probe:
            self._probes = max(0, self._probes - 1)

    def _open(self, now: float, reason: str) -> None:
        self._opened_at = now
        self._suspects.update(self._failing)
        self._failing.clear()
        self._passed_over.clear()
        self.opened += 1
        self._move(BreakerState.OPEN, reason)

    def _forget_old(self, now: float) -> None:
        horizon = now - self.config.window_s
        for key, at in list(self._failing.items()):
            if at >= horizon:
                break
            del self._failing[key]

    def _move(self, new: BreakerState, reason: str) -> None:
        old, self.state = self.state, new
        self.since = datetime.now(UTC)
        if self.on_transition is not None:
            self.on_transition(Transition(self.provider, old, new, reason))


class Bulkhead:
    """At most ``limit`` calls inside a provider at once; a caller that gets no slot within
    ``wait_s`` is refused (:class:`ProviderDeferred`, waiting ``busy_wait()``)."""

    def __init__(
        self, provider: str, limit: int, wait_s: float, busy_wait: Callable[[], float]
    ) -> None:
        self.provider = provider
        self.limit = limit
        self.wait_s = wait_s
        self.busy_wait = busy_wait
        self.in_use = 0
        self._slots = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the block, or raise :class:`ProviderDeferred`."""
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self.wait_s)
            except TimeoutError:
                raise ProviderDeferred(self.provider, self.busy_wait(), "busy") from None
        else:
            await self._slots.acquire()
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
            self._slots.release()


class ProviderGuard:
    """One provider's breaker, bulkhead and injected faults, around the handlers calling it."""

    def __init__(
        self,
        provider: str,
        config: BreakerSettings,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.provider = provider
        self.config = config
        self.rng = rng or random.Random()
        self.on_change = on_change
        self.breaker = CircuitBreaker(
            provider, config, clock=clock, rng=self.rng, on_transition=self._transition
        )
        self.bulkhead = Bulkhead(
            provider, config.concurrency, config.queue_wait_ms / 1000, self.breaker.busy_wait
        )
        self.fault_rate = 0.0
        """Injected failure rate (0 to 1) in force: calls fail before reaching the provider."""
        self.deferred = 0
        """Messages refused (open or busy) since the process started."""

    async def call(self, key: str, run: Callable[[], Any]) -> Any:
        """``await run()`` (a handler) for message ``key`` behind the breaker; the provider
        calls it makes take a bulkhead slot each (:meth:`slot`).

        Raises:
            ProviderDeferred: the provider was not called (open, busy), or a probe failed.
            ProviderUnavailable: the provider failed (also when the failure was injected).
        """
        try:
            probe = self.breaker.admit(key)
        except ProviderDeferred as refused:
            self.count_deferral(refused)
            raise
        token = _current.set(self)
        try:
            result = await run()
        except ProviderDeferred as refused:
            self.breaker.released(probe)
            self.count_deferral(refused)
            raise
        except ProviderUnavailable as exc:
            self.breaker.failed(probe, key, exc)
            if probe:
                # The provider may still be down: this message waits like the others, its
                # attempts untouched (the rest of the cool-down, or a little while another
                # message probes).
                wait = self.breaker.retry_after() or self.breaker.busy_wait()
                still_down = ProviderDeferred(self.provider, wait, "probe failed")
                self.count_deferral(still_down)
                raise still_down from exc
            raise
        except BaseException:
            self.breaker.released(probe)
            raise
        finally:
            _current.reset(token)
        self.breaker.succeeded(probe)
        return result

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One call inside the provider: holds a bulkhead slot, and fails at once, before the
        provider, when an injected fault says so.

        Raises:
            ProviderDeferred: no slot within ``queue_wait_ms``.
            ProviderUnavailable: an injected fault.
        """
        async with self.bulkhead.slot():
            if self.fault_rate and self.rng.random() < self.fault_rate:
                raise ProviderUnavailable(
                    f"provider {self.provider}: injected fault (failure rate {self.fault_rate:g})"
                )
            yield

    def count_deferral(self, refused: ProviderDeferred) -> None:
        """Count a message refused by this guard (in ``choreo.provider.deferred`` too)."""
        self.deferred += 1
        metrics.provider_deferred().add(1, {"provider": self.provider, "reason": refused.reason})

    def _transition(self, change: Transition) -> None:
        level = logging.WARNING if change.new is BreakerState.OPEN else logging.INFO
        log.log(
            level,
            "circuit breaker of provider %s: %s -> %s: %s",
            change.provider,
            change.old,
            change.new,
            change.reason,
        )
        metrics.breaker_transitions().add(1, {"provider": change.provider, "state": change.new})
        if self.on_change is not None:
            self.on_change()


class ProviderGuards:
    """The guards of one process, by provider: wraps the handlers that declare a provider.

    Args:
        providers: the providers the process's handlers call.
        settings: each provider's settings (default: :meth:`BreakerSettings.for_provider`).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        providers: Iterable[str],
        settings: Callable[[str], BreakerSettings] = BreakerSettings.for_provider,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.changed = asyncio.Event()
        """Set on every transition (the board publishes at once), cleared by its reader."""
        self.guards = {
            name: ProviderGuard(name, settings(name), clock=clock, on_change=self.changed.set)
            for name in sorted(set(providers))
        }
        self._wrapped: dict[int, HandlerSpec] = {}

    def __bool__(self) -> bool:
        return bool(self.guards)

    def __iter__(self) -> Iterator[ProviderGuard]:
        return iter(self.guards.values())

    def __getitem__(self, provider: str) -> ProviderGuard:
        return self.guards[provider]

    def guarded(self, spec: HandlerSpec) -> HandlerSpec:
        """``spec`` with its function run behind its provider's guard (itself if it declares
        no provider)."""
        if spec.provider is None:
            return spec
        wrapped = self._wrapped.get(id(spec))
        if wrapped is None:
            guard = self.guards[spec.provider]
            func = spec.func

            @functools.wraps(func)
            async def behind_guard(message: Message[Any], context: Any) -> HandlerResult:
                key = str(message.envelope.event_id)
                result: HandlerResult = await guard.call(key, lambda: func(message, context))
                return result

            wrapped = dataclasses.replace(spec, func=behind_guard)
            self._wrapped[id(spec)] = wrapped
        return wrapped

    def refusal(self, spec: HandlerSpec) -> ProviderDeferred | None:
        """If ``spec``'s provider is open (its cool-down not over), the deferral its message
        gets without being tried; None when it may be tried. Counts the deferral."""
        if spec.provider is None:
            return None
        guard = self.guards[spec.provider]
        wait = guard.breaker.retry_after()
        if wait is None:
            return None
        refused = ProviderDeferred(spec.provider, wait, "circuit open")
        guard.count_deferral(refused)
        return refused

    def states(self) -> list[tuple[str, BreakerState, int]]:
        """``(provider, state, calls in its bulkhead)`` of each guard, for the gauges."""
        return [(g.provider, g.breaker.state, g.bulkhead.in_use) for g in self]
