"""Unit tests of the domain services: handlers called directly on in-memory stores."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

from events.model import Event


async def emitted(result: Awaitable[Iterable[Event] | None]) -> list[Any]:
    """What one handler call emits, as a list.

    ``Router.on`` types a decorated handler's result as ``Iterable[Event] | None``; the list
    (of ``Any``) lets a test unpack it and read the fields of the event it expects.
    """
    return list(await result or ())
