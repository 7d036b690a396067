"""Per-key locks of one transaction: an order's (or a return's) handlers serialize on them.

A service's handlers lock their saga's key first, because messages of one order arrive on
several topics and may be handled at the same time, by this process or a replica. The locks
are PostgreSQL advisory locks scoped to the transaction (released at commit or rollback,
never leaked). :class:`KeyLocks` takes each key once per transaction, and a whole batch's
keys in one statement (:func:`saga_keys_locked_first`), where each handler took its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from events import tracing
from events.database import Connection
from events.delivery import BatchScope
from events.model import Event, Message

C = TypeVar("C")


class KeyLocks:
    """Transaction-scoped advisory locks on the keys of ``schema`` (``<schema>:<key>``), each
    taken once. Bound to one transaction's connection, like the store that holds it."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.held: set[str] = set()

    async def lock(self, key: str) -> None:
        """Wait for ``key``'s lock, unless this transaction holds it already."""
        if key not in self.held:
            await self.conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{self.schema}:{key}"
            )
            self.held.add(key)

    async def lock_all(self, keys: Iterable[str]) -> None:
        """Wait for the locks of ``keys`` not held yet, in one statement, in sorted order (two
        transactions taking overlapping batches never wait on each other crosswise)."""
        wanted = sorted(set(keys) - self.held)
        if not wanted:
            return
        # unnest yields the array's order, and each row's lock is taken as the row is made.
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k",
            [f"{self.schema}:{key}" for key in wanted],
        )
        self.held.update(wanted)


def saga_keys_locked_first(lock: Callable[[C, Sequence[str]], Awaitable[None]]) -> BatchScope[C]:
    """A batch scope (:class:`~events.delivery.TransactionalDelivery`) that locks the saga keys
    of a batch's messages with ``lock(context, keys)`` before its first handler runs."""

    @contextlib.asynccontextmanager
    async def scope(context: C, messages: Sequence[Message[Event]]) -> AsyncIterator[None]:
        with tracing.housekeeping():
            await lock(context, [m.saga_key for m in messages])
        yield

    return scope
