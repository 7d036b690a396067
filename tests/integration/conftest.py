"""Fixtures of the integration tests that work in a PostgreSQL schema of their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from events.database import Database, schema_name
from events.settings import Settings


@dataclass(frozen=True)
class Scratch:
    """A database and a schema name no other test uses (the schema is not created)."""

    db: Database
    schema: str


@pytest.fixture
async def scratch(settings: Settings) -> AsyncIterator[Scratch]:
    """A scratch schema on the stack's PostgreSQL, dropped when the test ends."""
    schema = schema_name(settings, f"scratch_{uuid.uuid4().hex[:8]}")
    async with Database(settings) as db:
        yield Scratch(db, schema)
        await db.pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
