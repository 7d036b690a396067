"""The coordinator's folded sagas kept between messages (saga_coordinator/cache.py), on the
in-memory store: only new facts are read while the remembered state holds, and the whole
stream once it does not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from contracts.catalog import OrderApproved
from events.model import Event, Message
from saga_coordinator.cache import HeldSagas, SagaCache, load_state
from saga_coordinator.context import CoordinatorContext
from saga_coordinator.engine.state import fold
from saga_coordinator.engine.timing import TimerOp
from saga_coordinator.errors import SagaConflictError
from saga_coordinator.handlers import advance, sagas_of_batch
from saga_coordinator.memory_store import InMemorySagaStore
from saga_coordinator.store import Decided, Fact, FactRef
from sagas.order import V1
from sagas.registry import SagaRegistry

from .flow import T0, charged, message, placed, reserved, types

SAGAS = SagaRegistry([V1])


class CountingStore(InMemorySagaStore):
    """Counts whole-stream reads and the positions facts were read after."""

    def __init__(self) -> None:
        super().__init__()
        self.whole_reads = 0
        self.read_after: list[int] = []
        self.single_locks = 0
        self.read_ahead: list[dict[str, FactRef | None]] = []
        self.recorded_at_once: list[int] = []
        """How many decisions each record_many call had."""

    async def load(self, order_id: str) -> list[Fact]:
        self.whole_reads += 1
        return await super().load(order_id)

    async def load_after(self, order_id: str, after: FactRef) -> list[Fact] | None:
        self.read_after.append(after.seq)
        return await super().load_after(order_id, after)

    async def lock_and_load(self, order_id: str, after: FactRef | None = None) -> list[Fact] | None:
        self.single_locks += 1
        return await super().lock_and_load(order_id, after)

    async def record_many(self, decisions: Sequence[Decided]) -> None:
        self.recorded_at_once.append(len(decisions))
        await super().record_many(decisions)

    async def lock_and_load_many(
        self, wanted: Mapping[str, FactRef | None]
    ) -> dict[str, list[Fact] | None]:
        """Counted as one call, not as the reads it stands for."""
        self.read_ahead.append(dict(wanted))
        base = InMemorySagaStore
        found: dict[str, list[Fact] | None] = {}
        for key, after in wanted.items():
            if after is None:
                found[key] = await base.load(self, key)
            else:
                found[key] = await base.load_after(self, key, after)
        return found


def context(store: InMemorySagaStore, cache: SagaCache) -> CoordinatorContext:
    return CoordinatorContext(store, SAGAS, lambda: T0, cache)


async def batch(ctx: CoordinatorContext, *messages: Message[Event]) -> list[list[str]]:
    """``messages`` as the runtime delivers a batch: inside the coordinator's batch scope."""
    async with sagas_of_batch(ctx, messages):
        return [types(await advance(m, ctx)) for m in messages]


async def test_a_remembered_saga_reads_only_the_facts_after_its_state():
    store, cache = CountingStore(), SagaCache()
    ctx = context(store, cache)
    await advance(message(placed()), ctx)
    assert store.whole_reads == 1  # a saga not seen yet
    after_placed = len(store.streams["ord-1"])
    [approval] = await advance(message(reserved()), ctx)
    assert isinstance(approval, OrderApproved)
    stored = len(store.streams["ord-1"])
    assert stored > after_placed
    assert store.whole_reads == 1
    assert store.read_after == [after_placed]
    remembered = cache.get("ord-1")
    assert remembered is not None
    assert remembered.state == fold("ord-1", store.streams["ord-1"])  # type: ignore[arg-type]
    assert remembered.last.seq == stored
    assert (cache.hits, cache.misses) == (1, 1)


async def test_what_another_writer_appended_is_folded_onto_the_remembered_state():
    store, cache = CountingStore(), SagaCache()
    ctx = context(store, cache)
    await advance(message(placed()), ctx)
    # Another replica handles the reservation: this process's cache does not see it.
    await advance(message(reserved()), context(store, SagaCache()))
    events = await advance(message(charged()), ctx)
    assert types(events) == types(await decide_fresh(store, charged()))
    assert store.whole_reads == 2  # one per process's first sight of the saga
    remembered = cache.get("ord-1")
    assert remembered is not None
    assert remembered.state == fold("ord-1", store.streams["ord-1"])  # type: ignore[arg-type]


async def decide_fresh(store: InMemorySagaStore, event: Event) -> list[Event]:
    """What a process remembering nothing decides on ``event`` (on a copy of the store)."""
    copy = InMemorySagaStore()
    copy.streams = {key: list(stream) for key, stream in store.streams.items()}
    copy.timer_rows = dict(store.timer_rows)
    return await advance(message(event), context(copy, SagaCache()))


@pytest.mark.parametrize("rolled_back", [1, 2])
async def test_a_state_whose_facts_rolled_back_is_read_again_whole(rolled_back: int):
    store, cache = CountingStore(), SagaCache()
    ctx = context(store, cache)
    await advance(message(placed()), ctx)
    await advance(message(reserved()), ctx)
    # The reservation's transaction rolled back after the decision was remembered.
    del store.streams["ord-1"][-rolled_back:]
    whole_before = store.whole_reads
    expected = await decide_fresh(store, reserved())
    assert types(await advance(message(reserved()), ctx)) == types(expected)
    assert store.whole_reads == whole_before + 1
    remembered = cache.get("ord-1")
    assert remembered is not None
    assert remembered.state == fold("ord-1", store.streams["ord-1"])  # type: ignore[arg-type]


async def test_a_timer_pass_that_finds_the_saga_busy_reads_nothing():
    class Busy(CountingStore):
        async def lock(self, order_id: str, *, wait: bool = True) -> bool:
            return wait

    store = Busy()
    assert await load_state(store, "ord-1", SAGAS, SagaCache(), wait=False) is None
    assert (store.whole_reads, store.read_after) == (0, [])


async def test_a_conflicting_record_forgets_the_saga():
    class Conflicting(InMemorySagaStore):
        async def record(
            self,
            order_id: str,
            facts: Sequence[Fact],
            expected_seq: int,
            timers: Sequence[TimerOp] = (),
            traceparent: str | None = None,
        ) -> None:
            raise SagaConflictError(f"saga {order_id} moved on")

    store, cache = Conflicting(), SagaCache()
    await advance(message(placed()), context(InMemorySagaStore(), cache))  # remembered
    store.streams = {}
    assert cache.get("ord-1") is not None
    with pytest.raises(SagaConflictError):
        await advance(message(placed()), context(store, cache))
    assert cache.get("ord-1") is None


async def test_the_least_recently_used_saga_goes_first():
    store = InMemorySagaStore()
    await advance(message(placed()), context(store, SagaCache()))
    stream = store.streams["ord-1"]
    state = fold("ord-1", stream)  # type: ignore[arg-type]  # the engine's facts
    cache = SagaCache(size=2)
    for key in ("a", "b"):
        cache.put(key, state, stream[-1])
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", state, stream[-1])
    assert [key for key in "abc" if cache.get(key) is not None] == ["a", "c"]
    nothing = SagaCache(size=0)
    nothing.put("a", state, stream[-1])
    assert nothing.get("a") is None


async def test_a_batch_locks_and_reads_all_its_sagas_in_one_call():
    store, cache = CountingStore(), SagaCache()
    await advance(message(placed()), context(store, cache))  # ord-1 remembered
    known = cache.get("ord-1")
    assert known is not None
    other = placed()
    ctx = context(store, cache)
    decided = await batch(
        ctx,
        message(reserved()),
        message(other, order_id="ord-2"),
        message(charged()),  # ord-1 again, after this batch's own decision
    )
    assert store.read_ahead == [{"ord-1": known.last, "ord-2": None}]
    assert store.single_locks == 1  # the first placed's, before the batch
    assert store.whole_reads == 1  # the first placed's
    assert store.read_after == []
    assert ctx.held.locked == {"ord-1", "ord-2"}
    assert ctx.held.read == {}
    assert store.recorded_at_once == [3]  # the three decisions, in one call at the end
    # The same decisions as messages one at a time on a process remembering nothing.
    fresh = InMemorySagaStore()
    await advance(message(placed()), context(fresh, SagaCache()))
    one_by_one = [
        types(await advance(message(reserved()), context(fresh, SagaCache()))),
        types(await advance(message(other, order_id="ord-2"), context(fresh, SagaCache()))),
        types(await advance(message(charged()), context(fresh, SagaCache()))),
    ]
    assert decided == one_by_one
    for key in ("ord-1", "ord-2"):
        remembered = cache.get(key)
        assert remembered is not None
        assert remembered.state == fold(key, store.streams[key])  # type: ignore[arg-type]


async def test_a_batch_reads_a_saga_whole_when_its_read_ahead_state_went_stale():
    store, cache = CountingStore(), SagaCache()
    ctx = context(store, cache)
    await advance(message(placed()), ctx)
    await advance(message(reserved()), ctx)
    del store.streams["ord-1"][-1:]  # the reservation's transaction rolled back
    expected = await decide_fresh(store, reserved())
    whole_before = store.whole_reads
    assert await batch(context(store, cache), message(reserved())) == [types(expected)]
    assert store.whole_reads == whole_before + 1


async def test_a_batch_passes_a_saga_the_cache_does_not_keep_from_message_to_message():
    store, cache = CountingStore(), SagaCache(size=0)  # remembers nothing
    await advance(message(placed()), context(store, cache))
    one_by_one = InMemorySagaStore()
    one_by_one.streams = {key: list(stream) for key, stream in store.streams.items()}
    expected = [
        types(await advance(message(event), context(one_by_one, SagaCache())))
        for event in (reserved(), charged())
    ]
    whole_before = store.whole_reads
    assert await batch(context(store, cache), message(reserved()), message(charged())) == expected
    # Read ahead (whole, in the one call) for the first message; the second takes the state
    # the first left, whose facts are recorded only when the batch ends.
    assert len(store.read_ahead) == 1
    assert store.whole_reads == whole_before
    assert store.recorded_at_once == [2]
    kinds = [[fact.kind for fact in s.streams["ord-1"]] for s in (store, one_by_one)]
    assert kinds[0] == kinds[1]


def test_held_sagas_give_what_was_read_ahead_once_and_from_where_it_was_read():
    ref = FactRef(1, "started", None, T0)
    held = HeldSagas(locked={"a", "b"}, read={"a": (None, []), "b": (None, [])})
    assert held.stream("a", None) == []  # read ahead from the start: a new saga
    assert held.stream("a", None) is None  # taken already
    assert held.stream("b", ref) is None  # read from another position than the one known


async def test_a_batch_whose_decisions_conflict_forgets_its_sagas():
    class Conflicting(CountingStore):
        async def record_many(self, decisions: Sequence[Decided]) -> None:
            raise SagaConflictError("another writer moved a saga on")

    store, cache = Conflicting(), SagaCache()
    ctx = context(store, cache)
    with pytest.raises(SagaConflictError):
        await batch(ctx, message(placed()), message(placed(), order_id="ord-2"))
    assert cache.get("ord-1") is None
    assert cache.get("ord-2") is None
    assert store.streams == {}
