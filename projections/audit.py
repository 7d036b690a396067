"""The redrive audit: who redrove which dead letters, and when, as rows the API writes.

Every redrive the API performs (``POST /dead-letters/redrive``, from a script or the
console's dead-letters page) appends one row to ``redrive_audit`` in the API's own schema
(``<prefix>_api``; the API never writes the projector's tables): the time, the token's name
and id, and each redriven letter (its id, event type, order, source topic, consumer, reason).
The row is written after the records were published: a redrive that failed to publish is not
recorded as done, and one whose audit write failed still left its marker in the dead-letter
topic (:mod:`events.redrive`), which names the token too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from events.database import Database, lock_id
from events.redrive import DeadLetterEntry
from projections.tokens import Principal

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.redrive_audit (
    id          bigserial   PRIMARY KEY,
    redriven_at timestamptz NOT NULL DEFAULT now(),
    redriven_by text        NOT NULL,
    token_id    text        NOT NULL,
    letters     jsonb       NOT NULL
);
"""


def letter_record(entry: DeadLetterEntry) -> dict[str, Any]:
    """What the audit keeps of one redriven letter (not its bytes: they stay in the topic)."""
    letter = entry.letter
    return {
        "id": entry.id,
        "event_type": letter.event_type,
        "order_id": letter.order_id,
        "source_topic": letter.source_topic,
        "consumer": letter.consumer,
        "reason": letter.reason,
    }


class RedriveAudit:
    """The ``redrive_audit`` table of one API deployment (created on first use)."""

    def __init__(self, db: Database, schema: str) -> None:
        self.db = db
        self.schema = schema
        self._created = False
        self._lock = asyncio.Lock()

    async def _ensure(self) -> None:
        async with self._lock:
            if self._created:
                return
            async with self.db.pool.acquire() as conn, conn.transaction():
                # API replicas starting together must not race on CREATE ... IF NOT EXISTS.
                lock = lock_id(f"migrate:{self.schema}")
                await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
                # Not `CREATE SCHEMA IF NOT EXISTS`: that needs CREATE on the database, which
                # the API's own role lacks (its schema is made for it: choreo/roles).
                if not await conn.fetchval(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema
                ):
                    await conn.execute(f"CREATE SCHEMA {self.schema}")
                await conn.execute(DDL.format(schema=self.schema))
            self._created = True

    async def record(self, by: Principal, entries: Sequence[DeadLetterEntry]) -> dict[str, Any]:
        """Append the redrive of ``entries`` by ``by``; the row as :meth:`recent` shows it."""
        await self._ensure()
        row = await self.db.pool.fetchrow(
            f"INSERT INTO {self.schema}.redrive_audit (redriven_by, token_id, letters)"
            " VALUES ($1, $2, $3::jsonb) RETURNING *",
            by.name,
            by.token_id,
            orjson.dumps([letter_record(e) for e in entries]).decode(),
        )
        return _row(row)

    async def recent(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """The latest redrives, newest first."""
        await self._ensure()
        rows = await self.db.pool.fetch(
            f"SELECT * FROM {self.schema}.redrive_audit ORDER BY id DESC LIMIT $1", limit
        )
        return [_row(r) for r in rows]


def _row(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "redriven_at": row["redriven_at"].isoformat(),
        "redriven_by": row["redriven_by"],
        "token_id": row["token_id"],
        "letters": orjson.loads(row["letters"]),
    }
