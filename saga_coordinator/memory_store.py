"""An in-memory :class:`~saga_coordinator.store.SagaStore` for unit tests; the contract suite
(``tests/integration/saga_coordinator/test_store.py``) holds it to PostgreSQL's behaviour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from saga_coordinator.engine.timing import ScheduleTimer, TimerOp
from saga_coordinator.errors import SagaConflictError
from saga_coordinator.store import Barrier, Decided, Fact, FactRef, Timer, last_op_by_name


class InMemorySagaStore:
    """A :class:`SagaStore` in dictionaries, for unit tests. Not transactional."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Fact]] = {}
        self.timer_rows: dict[tuple[str, str], datetime] = {}
        self.timer_traces: dict[tuple[str, str], str | None] = {}
        self.timer_holds: dict[tuple[str, str], tuple[datetime, Barrier | None]] = {}

    async def lock(self, order_id: str, *, wait: bool = True) -> bool:
        return True  # one event loop, no await inside an operation: nothing to serialize

    async def load(self, order_id: str) -> list[Fact]:
        return list(self.streams.get(order_id, ()))

    async def load_after(self, order_id: str, after: FactRef) -> list[Fact] | None:
        stream = self.streams.get(order_id, [])
        if len(stream) < after.seq or FactRef.of(after.seq, stream[after.seq - 1]) != after:
            return None
        return stream[after.seq :]

    async def lock_and_load(self, order_id: str, after: FactRef | None = None) -> list[Fact] | None:
        if after is None:
            return await self.load(order_id)
        return await self.load_after(order_id, after)

    async def lock_and_load_many(
        self, wanted: Mapping[str, FactRef | None]
    ) -> dict[str, list[Fact] | None]:
        return {key: await self.lock_and_load(key, after) for key, after in wanted.items()}

    async def append(self, order_id: str, facts: Sequence[Fact], expected_seq: int) -> None:
        stream = self.streams.setdefault(order_id, [])
        if len(stream) != expected_seq:
            raise SagaConflictError(
                f"saga {order_id} is at seq {len(stream)}, the writer expected {expected_seq}"
            )
        stream.extend(facts)

    async def record(
        self,
        order_id: str,
        facts: Sequence[Fact],
        expected_seq: int,
        timers: Sequence[TimerOp] = (),
        traceparent: str | None = None,
    ) -> None:
        if facts:
            await self.append(order_id, facts, expected_seq)
        for name, op in last_op_by_name(timers).items():
            if isinstance(op, ScheduleTimer):
                await self.schedule(order_id, name, op.due_at, traceparent)
            else:
                await self.cancel(order_id, name)

    async def record_many(self, decisions: Sequence[Decided]) -> None:
        for decided in decisions:
            await self.record(
                decided.order_id,
                decided.facts,
                decided.expected_seq,
                decided.timers,
                decided.traceparent,
            )

    async def schedule(
        self, order_id: str, name: str, due_at: datetime, traceparent: str | None = None
    ) -> None:
        if self.timer_rows.get((order_id, name)) != due_at:
            self.timer_holds.pop((order_id, name), None)
        self.timer_rows[(order_id, name)] = due_at
        self.timer_traces[(order_id, name)] = traceparent

    async def cancel(self, order_id: str, name: str) -> None:
        self.timer_rows.pop((order_id, name), None)
        self.timer_holds.pop((order_id, name), None)

    async def hold(
        self, order_id: str, name: str, until: datetime, barrier: Barrier | None
    ) -> None:
        if (order_id, name) in self.timer_rows:
            self.timer_holds[(order_id, name)] = (until, barrier)

    def _next(self, key: tuple[str, str]) -> datetime:
        held = self.timer_holds.get(key)
        return held[0] if held is not None else self.timer_rows[key]

    async def any_due(self, now: datetime) -> bool:
        return any(self._next(key) <= now for key in self.timer_rows)

    async def due(self, now: datetime, limit: int) -> list[Timer]:
        due = sorted(
            (
                Timer(
                    order_id,
                    name,
                    due_at,
                    self.timer_traces.get((order_id, name)),
                    self.timer_holds.get((order_id, name), (due_at, None))[1],
                )
                for (order_id, name), due_at in self.timer_rows.items()
            ),
            key=lambda t: (self._next((t.order_id, t.name)), t.order_id, t.name),
        )
        return [t for t in due if self._next((t.order_id, t.name)) <= now][:limit]

    async def timers(self, order_id: str) -> dict[str, datetime]:
        return {name: due for (oid, name), due in self.timer_rows.items() if oid == order_id}

    async def all_sagas(self) -> list[str]:
        return sorted(oid for oid, stream in self.streams.items() if stream)
