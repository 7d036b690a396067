"""Calling a service's external provider from a handler.

A provider that does not answer in time is a transient failure
(:class:`~events.errors.ProviderUnavailable`): the handler's transaction rolls back, the runtime
retries the message with backoff (and dead-letters it in the end), and the failure counts
against the provider's circuit breaker when the handler declared the provider it calls
(:mod:`events.breakers`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import TypeVar

from events.breakers import current_guard
from events.errors import ProviderUnavailable

T = TypeVar("T")


async def within(call: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await ``call``; past ``timeout_s`` raise :class:`ProviderUnavailable` naming ``what``
    (e.g. ``"the payment gateway (charge)"``).

    In a handler that declared its provider, the call holds a slot of the provider's bulkhead
    and may fail at once with an injected fault (:meth:`~events.breakers.ProviderGuard.slot`).
    """
    guard = current_guard()
    if guard is None:
        return await _answer(call, timeout_s, what)
    try:
        async with guard.slot():
            return await _answer(call, timeout_s, what)
    finally:
        if inspect.iscoroutine(call) and inspect.getcoroutinestate(call) == inspect.CORO_CREATED:
            call.close()  # never started (no slot, an injected fault): not "never awaited"


async def _answer(call: Awaitable[T], timeout_s: float, what: str) -> T:
    try:
        return await asyncio.wait_for(call, timeout_s)
    except TimeoutError as exc:
        raise ProviderUnavailable(f"{what} did not answer within {timeout_s}s") from exc
