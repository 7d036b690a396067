"""The database handle opens one pool, however many callers start it at once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from events.database import Database
from events.settings import Settings


async def test_concurrent_starts_share_one_pool(monkeypatch: pytest.MonkeyPatch):
    opened: list[object] = []

    async def create_pool(*_args: Any, **_kwargs: Any) -> object:
        await asyncio.sleep(0.01)  # a connection takes a round trip: the others arrive meanwhile
        pool = object()
        opened.append(pool)
        return pool

    monkeypatch.setattr(asyncpg, "create_pool", create_pool)
    db = Database(Settings())
    await asyncio.gather(*(db.start() for _ in range(50)))
    assert len(opened) == 1
    assert db.pool is opened[0]
