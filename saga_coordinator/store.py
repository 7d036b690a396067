"""Where sagas live: their append-only fact streams and their durable timers.

:class:`SagaStore` is the narrow interface the handlers and the timer loop use;
:class:`PostgresSagaStore` is bound to one transaction's connection (the one the runtime opened
for the message, so facts, timers, inbox mark and outbox rows commit together) and
:class:`~saga_coordinator.memory_store.InMemorySagaStore` serves unit tests. One contract
suite runs against both (``tests/integration/saga_coordinator/test_store.py``).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias

import asyncpg
import orjson

from events.database import Connection
from saga_coordinator import facts as old
from saga_coordinator.engine import facts as new
from saga_coordinator.engine.timing import CancelTimer, ScheduleTimer, TimerOp
from saga_coordinator.errors import SagaConflictError
from saga_coordinator.store_sql import LOCK_LOAD_MANY_SQL, RECORD_MANY_SQL

Fact: TypeAlias = new.Fact | old.Fact
"""A stored fact: the engine's, or one the order saga's own core wrote before definitions
(read as the engine's by :func:`saga_coordinator.legacy.read`)."""


def parse_stored(kind: str, data: Any, *, at: datetime, event_id: Any) -> Fact:
    """A stored row as its fact: an engine kind, else one of the old core's."""
    if kind in new.FACTS:
        return new.parse(kind, data, at=at, event_id=event_id)
    return old.parse_fact(kind, data, at=at, event_id=event_id)


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: saga ``order_id``'s timer ``name`` is due at ``due_at``."""

    order_id: str
    name: str
    due_at: datetime
    traceparent: str | None = None
    """The trace context the timer was set in; its firing continues that trace."""
    barrier: Barrier | None = None
    """Set while it is held back: the end offsets the coordinator must pass first."""


Barrier: TypeAlias = Mapping[tuple[str, int], int]
"""End offsets by (topic, partition)."""


def barrier_json(barrier: Barrier | None) -> str | None:
    """A barrier as stored: ``{"topic:partition": offset}``."""
    if barrier is None:
        return None
    return orjson.dumps({f"{t}:{p}": end for (t, p), end in barrier.items()}).decode()


def barrier_from_json(stored: str | None) -> Barrier | None:
    if stored is None:
        return None
    parsed = ((key.rsplit(":", 1), end) for key, end in orjson.loads(stored).items())
    return {(topic, int(partition)): int(end) for (topic, partition), end in parsed}


@dataclass(frozen=True, slots=True)
class FactRef:
    """A stored fact's position and identity: what a remembered state was folded up to
    (:mod:`saga_coordinator.cache`). Two facts at one position with the same kind, message
    and time are the same decision."""

    seq: int
    kind: str
    event_id: uuid.UUID | None
    at: datetime

    @staticmethod
    def of(seq: int, fact: Fact) -> FactRef:
        return FactRef(seq, fact.kind, fact.event_id, fact.at)


@dataclass(frozen=True, slots=True)
class Decided:
    """One decision's outcome, for :meth:`SagaStore.record_many`: :meth:`SagaStore.record`'s
    arguments."""

    order_id: str
    facts: Sequence[Fact]
    expected_seq: int
    timers: Sequence[TimerOp] = ()
    traceparent: str | None = None


def last_op_by_name(timers: Sequence[TimerOp]) -> dict[str, TimerOp]:
    """Each timer's last operation of ``timers``: what applying them in order leaves."""
    return {op.name: op for op in timers}


class SagaStore(Protocol):
    """Fact streams and timers of sagas. PostgreSQL methods run in the caller's transaction."""

    async def lock(self, order_id: str, *, wait: bool = True) -> bool:
        """Serialize work on one saga until the transaction ends.

        Handlers wait; the timer loop passes ``wait=False`` and skips a busy saga (it holds a
        timer row lock a handler may be waiting for, so waiting could deadlock). Returns
        whether the lock is held.
        """
        ...

    async def load(self, order_id: str) -> list[Fact]:
        """The saga's facts in order (``[]`` for an unknown saga)."""
        ...

    async def load_after(self, order_id: str, after: FactRef) -> list[Fact] | None:
        """The saga's facts after ``after``, or None if ``after`` is not the stream's fact at
        its position (a remembered state gone stale: a rolled-back decision, or another
        writer's)."""
        ...

    async def lock_and_load(self, order_id: str, after: FactRef | None = None) -> list[Fact] | None:
        """:meth:`lock` (waiting), then :meth:`load` or :meth:`load_after`; PostgreSQL does both
        in one round trip. None only when ``after`` is stale."""
        ...

    async def lock_and_load_many(
        self, wanted: Mapping[str, FactRef | None]
    ) -> dict[str, list[Fact] | None]:
        """:meth:`lock_and_load` of every saga in ``wanted`` (its key, and the fact it is known
        up to or None), the locks taken in one order so that two such calls never wait on
        each other crosswise. PostgreSQL does it all in one round trip."""
        ...

    async def append(self, order_id: str, facts: Sequence[Fact], expected_seq: int) -> None:
        """Append ``facts`` after position ``expected_seq`` (the number of facts loaded).

        Raises :class:`SagaConflictError` (retryable) if the stream moved on meanwhile.
        """
        ...

    async def record(
        self,
        order_id: str,
        facts: Sequence[Fact],
        expected_seq: int,
        timers: Sequence[TimerOp] = (),
        traceparent: str | None = None,
    ) -> None:
        """A decision's outcome: :meth:`append` ``facts``, then apply ``timers`` in order
        (:meth:`schedule` with ``traceparent``, :meth:`cancel`). PostgreSQL does it in one
        statement, a coordinator's every message otherwise costing one per timer.

        Raises :class:`SagaConflictError` like :meth:`append`, having changed nothing.
        """
        ...

    async def record_many(self, decisions: Sequence[Decided]) -> None:
        """:meth:`record` each of ``decisions`` in order (a saga's in the order they were made,
        each on the position the one before left). PostgreSQL does it in one statement.

        Raises :class:`SagaConflictError` if some saga moved on meanwhile; in PostgreSQL,
        having changed nothing.
        """
        ...

    async def schedule(
        self, order_id: str, name: str, due_at: datetime, traceparent: str | None = None
    ) -> None:
        """Create timer ``name`` of the saga, or move it to ``due_at``."""
        ...

    async def cancel(self, order_id: str, name: str) -> None:
        """Delete timer ``name`` of the saga; nothing if there is none."""
        ...

    async def hold(
        self, order_id: str, name: str, until: datetime, barrier: Barrier | None
    ) -> None:
        """Hold a due timer back: look at it again at ``until`` (its due time stays what the
        saga's state says). Scheduling it anew (another due time) ends the hold."""
        ...

    async def any_due(self, now: datetime) -> bool:
        """Whether some timer is due at ``now``, and not held past it (a cheap check before a
        timer pass)."""
        ...

    async def due(self, now: datetime, limit: int) -> list[Timer]:
        """Up to ``limit`` timers due at ``now`` and not held past it, earliest first.

        PostgreSQL locks them (``FOR UPDATE SKIP LOCKED``) until the transaction ends, so
        concurrent pollers never fire the same timer.
        """
        ...

    async def timers(self, order_id: str) -> dict[str, datetime]:
        """The saga's pending timers by name."""
        ...

    async def all_sagas(self) -> list[str]:
        """Every saga's order id, sorted (for replay and tests)."""
        ...


class PostgresSagaStore:
    """A :class:`SagaStore` on the coordinator's schema, inside the caller's transaction.

    Args:
        conn: The connection whose transaction everything joins.
        schema: The coordinator's schema (see :func:`events.database.schema_name`).
    """

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def _lock_key(self, order_id: str) -> int:
        # A signed 64-bit advisory lock key per (schema, saga); a collision only serializes
        # two unrelated sagas, it never breaks correctness.
        digest = zlib.crc32(self.schema.encode()) << 32 | zlib.crc32(order_id.encode())
        return digest - (1 << 64) if digest >= 1 << 63 else digest

    async def lock(self, order_id: str, *, wait: bool = True) -> bool:
        key = self._lock_key(order_id)
        if wait:
            await self.conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            return True
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key))

    async def load(self, order_id: str) -> list[Fact]:
        rows = await self.conn.fetch(
            f"SELECT seq, kind, event_id, data, recorded_at FROM {self.schema}.saga_events"
            " WHERE order_id = $1 ORDER BY seq",
            order_id,
        )
        return _parsed(rows)

    async def load_after(self, order_id: str, after: FactRef) -> list[Fact] | None:
        rows = await self.conn.fetch(
            f"SELECT seq, kind, event_id, data, recorded_at FROM {self.schema}.saga_events"
            " WHERE order_id = $1 AND seq >= $2 ORDER BY seq",
            order_id,
            after.seq,
        )
        return _parsed_after(rows, after)

    async def lock_and_load(self, order_id: str, after: FactRef | None = None) -> list[Fact] | None:
        rows = await self.conn.fetch(
            f"SELECT * FROM {self.schema}.saga_lock_load_v1($1, $2, $3)",
            self._lock_key(order_id),
            order_id,
            1 if after is None else after.seq,
        )
        return _parsed(rows) if after is None else _parsed_after(rows, after)

    async def lock_and_load_many(
        self, wanted: Mapping[str, FactRef | None]
    ) -> dict[str, list[Fact] | None]:
        keys = sorted(wanted, key=self._lock_key)
        froms = [1 if (after := wanted[key]) is None else after.seq for key in keys]
        rows = await self.conn.fetch(
            LOCK_LOAD_MANY_SQL.format(schema=self.schema),
            [self._lock_key(key) for key in keys],
            keys,
            froms,
        )
        by_saga: dict[str, list[asyncpg.Record]] = {key: [] for key in keys}
        for row in rows:
            by_saga[row["saga"]].append(row)
        return {
            key: _parsed(found) if (after := wanted[key]) is None else _parsed_after(found, after)
            for key, found in by_saga.items()
        }

    async def append(self, order_id: str, facts: Sequence[Fact], expected_seq: int) -> None:
        await self.record(order_id, facts, expected_seq)

    async def record(
        self,
        order_id: str,
        facts: Sequence[Fact],
        expected_seq: int,
        timers: Sequence[TimerOp] = (),
        traceparent: str | None = None,
    ) -> None:
        await self.record_many([Decided(order_id, facts, expected_seq, timers, traceparent)])

    async def record_many(self, decisions: Sequence[Decided]) -> None:
        facts = _FactRows()
        bases: dict[str, int] = {}
        timers: dict[tuple[str, str], tuple[TimerOp, str | None]] = {}
        for decided in decisions:
            key = decided.order_id
            base = bases.setdefault(key, decided.expected_seq)
            if decided.expected_seq != base + facts.count(key):
                raise SagaConflictError(
                    f"saga {key}: a decision on seq {decided.expected_seq} follows one that"
                    f" left it at seq {base + facts.count(key)}"
                )
            facts.add(key, base, decided.facts)
            for op in decided.timers:
                timers[key, op.name] = (op, decided.traceparent)
        if not facts.seqs and not timers:
            return
        cancelled = [k for k, (op, _) in timers.items() if isinstance(op, CancelTimer)]
        moved = [(k, op, tp) for k, (op, tp) in timers.items() if isinstance(op, ScheduleTimer)]
        try:
            # One round trip: the position checks, the inserts and the timers are one
            # statement. The caller holds the sagas' locks, so a conflict means a writer that
            # skipped them; the unique key catches one that raced this statement. Either error
            # aborts the caller's transaction, timers included.
            appended = await self.conn.fetchval(
                RECORD_MANY_SQL.format(schema=self.schema),
                *facts.columns(),
                len(facts.seqs),
                [order_id for order_id, _ in cancelled],
                [name for _, name in cancelled],
                [order_id for (order_id, _), _, _ in moved],
                [name for (_, name), _, _ in moved],
                [op.due_at for _, op, _ in moved],
                [traceparent for _, _, traceparent in moved],
            )
        except asyncpg.UniqueViolationError as exc:
            raise SagaConflictError(
                f"{_sagas(bases)} moved past the seq decided on concurrently"
            ) from exc
        if appended != len(facts.seqs):
            raise SagaConflictError(f"{_sagas(bases)} is not at the seq decided on")

    async def schedule(
        self, order_id: str, name: str, due_at: datetime, traceparent: str | None = None
    ) -> None:
        await self.conn.execute(
            f"INSERT INTO {self.schema}.saga_timers AS t (order_id, name, due_at, traceparent)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (order_id, name) DO UPDATE"
            " SET due_at = EXCLUDED.due_at, traceparent = EXCLUDED.traceparent,"
            # Another due time is another deadline: its hold, if any, no longer applies.
            " held_until = CASE WHEN t.due_at = EXCLUDED.due_at THEN t.held_until END,"
            " barrier = CASE WHEN t.due_at = EXCLUDED.due_at THEN t.barrier END",
            order_id,
            name,
            due_at,
            traceparent,
        )

    async def cancel(self, order_id: str, name: str) -> None:
        await self.conn.execute(
            f"DELETE FROM {self.schema}.saga_timers WHERE order_id = $1 AND name = $2",
            order_id,
            name,
        )

    async def hold(
        self, order_id: str, name: str, until: datetime, barrier: Barrier | None
    ) -> None:
        await self.conn.execute(
            f"UPDATE {self.schema}.saga_timers SET held_until = $3, barrier = $4::jsonb"
            " WHERE order_id = $1 AND name = $2",
            order_id,
            name,
            until,
            barrier_json(barrier),
        )

    async def any_due(self, now: datetime) -> bool:
        return bool(
            await self.conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {self.schema}.saga_timers"
                " WHERE coalesce(held_until, due_at) <= $1)",
                now,
            )
        )

    async def due(self, now: datetime, limit: int) -> list[Timer]:
        rows = await self.conn.fetch(
            f"SELECT order_id, name, due_at, traceparent, barrier::text AS barrier"
            f" FROM {self.schema}.saga_timers WHERE coalesce(held_until, due_at) <= $1"
            " ORDER BY coalesce(held_until, due_at), order_id, name"
            " LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        return [
            Timer(
                row["order_id"],
                row["name"],
                row["due_at"],
                row["traceparent"],
                barrier_from_json(row["barrier"]),
            )
            for row in rows
        ]

    async def timers(self, order_id: str) -> dict[str, datetime]:
        rows = await self.conn.fetch(
            f"SELECT name, due_at FROM {self.schema}.saga_timers WHERE order_id = $1", order_id
        )
        return {row["name"]: row["due_at"] for row in rows}

    async def all_sagas(self) -> list[str]:
        rows = await self.conn.fetch(
            f"SELECT DISTINCT order_id FROM {self.schema}.saga_events ORDER BY order_id"
        )
        return [row["order_id"] for row in rows]


def _sagas(bases: Mapping[str, int]) -> str:
    """``saga ord-1 (seq 3)``, or ``one of sagas ord-1 (seq 3), ord-2 (seq 0)``."""
    named = ", ".join(f"{key} (seq {seq})" for key, seq in sorted(bases.items()))
    return f"saga {named}" if len(bases) == 1 else f"one of sagas {named}"


class _FactRows:
    """The facts of many decisions as :data:`RECORD_MANY_SQL`'s columns."""

    def __init__(self) -> None:
        self.order_ids: list[str] = []
        self.bases: list[int] = []
        self.seqs: list[int] = []
        self.kinds: list[str] = []
        self.event_ids: list[uuid.UUID | None] = []
        self.data: list[str] = []
        self.at: list[datetime] = []
        self._counts: dict[str, int] = {}

    def count(self, order_id: str) -> int:
        return self._counts.get(order_id, 0)

    def add(self, order_id: str, base: int, facts: Sequence[Fact]) -> None:
        for fact in facts:
            self._counts[order_id] = seq = self.count(order_id) + 1
            self.order_ids.append(order_id)
            self.bases.append(base)
            self.seqs.append(base + seq)
            self.kinds.append(fact.kind)
            self.event_ids.append(fact.event_id)
            self.data.append(orjson.dumps(fact.data()).decode())
            self.at.append(fact.at)

    def columns(self) -> tuple[list[Any], ...]:
        return (
            self.order_ids,
            self.bases,
            self.seqs,
            self.kinds,
            self.event_ids,
            self.data,
            self.at,
        )


def _parsed(rows: Sequence[asyncpg.Record]) -> list[Fact]:
    return [
        parse_stored(
            row["kind"], orjson.loads(row["data"]), at=row["recorded_at"], event_id=row["event_id"]
        )
        for row in rows
    ]


def _parsed_after(rows: Sequence[asyncpg.Record], after: FactRef) -> list[Fact] | None:
    """The facts of ``rows`` (from ``after``'s position on) after it; None if the first row is
    not ``after`` (a stale reference: the row was never committed, or is another writer's)."""
    if not rows:
        return None
    first = rows[0]
    if FactRef(first["seq"], first["kind"], first["event_id"], first["recorded_at"]) != after:
        return None
    return _parsed(rows[1:])
