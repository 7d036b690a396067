"""Calling a service's external provider from a handler.

A provider that does not answer in time is a transient failure
(:class:`~events.errors.ProviderUnavailable`): the handler's transaction rolls back, the runtime
retries the message with backoff (and dead-letters it in the end), and the failure counts
against the provider's circuit breaker when the handler declared the provider it calls
(:mod:`events.breakers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from events.errors import ProviderUnavailable

T = TypeVar("T")


async def within(call: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await ``call``; past ``timeout_s`` raise :class:`ProviderUnavailable` naming ``what``
    (e.g. ``"the payment gateway (charge)"``)."""
    try:
        return await asyncio.wait_for(call, timeout_s)
    except TimeoutError as exc:
        raise ProviderUnavailable(f"{what} did not answer within {timeout_s}s") from exc
