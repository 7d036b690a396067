"""Per-key advisory locks of one transaction (events/locks.py), on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from events.database import Connection
from events.locks import KeyLocks
from tests.integration.conftest import Scratch

pytestmark = pytest.mark.integration


async def held_elsewhere(scratch: Scratch, key: str) -> bool:
    """Whether another transaction holds ``key``'s lock (a try from a second connection)."""
    async with scratch.db.pool.acquire() as conn, conn.transaction():
        got = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", f"{scratch.schema}:{key}"
        )
        return not got


class Counting:
    """A connection that counts the statements run through it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements = 0

    async def execute(self, *args: Any) -> str:
        self.statements += 1
        return str(await self.conn.execute(*args))


async def test_a_batch_of_keys_is_locked_at_once_and_each_key_only_once(scratch: Scratch):
    async with scratch.db.pool.acquire() as conn:
        async with conn.transaction():
            counting = Counting(conn)
            locks = KeyLocks(cast(Connection, counting), scratch.schema)
            await locks.lock_all(["ord-2", "ord-1", "ord-2"])
            assert counting.statements == 1
            assert locks.held == {"ord-1", "ord-2"}
            for key in ("ord-1", "ord-2"):
                assert await held_elsewhere(scratch, key), key
            assert not await held_elsewhere(scratch, "ord-3")
            await locks.lock("ord-1")  # held already: no statement
            await locks.lock_all(["ord-2", "ord-1"])
            assert counting.statements == 1
            await locks.lock("ord-3")
            assert counting.statements == 2
            assert await held_elsewhere(scratch, "ord-3")
        # The transaction ended: every lock with it.
        assert not await held_elsewhere(scratch, "ord-1")


async def test_a_batch_waits_for_a_key_another_transaction_holds(scratch: Scratch):
    async with scratch.db.pool.acquire() as a, scratch.db.pool.acquire() as b:
        holder = a.transaction()
        await holder.start()
        await KeyLocks(a, scratch.schema).lock("ord-2")
        async with b.transaction():
            waiting = asyncio.create_task(
                KeyLocks(b, scratch.schema).lock_all(["ord-1", "ord-2", "ord-3"])
            )
            await asyncio.sleep(0.2)
            assert not waiting.done()
            # ord-1 was taken before ord-2 was waited for (sorted order); ord-3 not yet.
            assert await held_elsewhere(scratch, "ord-1")
            assert not await held_elsewhere(scratch, "ord-3")
            await holder.commit()
            await waiting
            assert await held_elsewhere(scratch, "ord-3")
