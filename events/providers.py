"""Calling a service's external provider from a handler.

A provider that does not answer in time is a transient failure: the handler's transaction rolls
back and the runtime retries the message with backoff (and dead-letters it in the end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from events.errors import TransientError

T = TypeVar("T")


async def within(call: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await ``call``; past ``timeout_s`` raise :class:`TransientError` naming ``what``
    (e.g. ``"the payment gateway (charge)"``)."""
    try:
        return await asyncio.wait_for(call, timeout_s)
    except TimeoutError as exc:
        raise TransientError(f"{what} did not answer within {timeout_s}s") from exc
