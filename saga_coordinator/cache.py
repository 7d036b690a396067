"""The coordinator's folded sagas, kept between messages: a message reads only new facts.

Every message a coordinator handles needs its saga's state: the fold of the saga's facts. Read
from scratch, that is the whole stream from PostgreSQL, parsed and folded, for every message
of an order, and it was the biggest part of a coordinator's own work after the statements
themselves. :class:`SagaCache` keeps each saga's state as of its last fact (a
:class:`~saga_coordinator.store.FactRef`: position and identity), and
:func:`load_state` asks the store for the facts after it, in the same round trip as the
saga's lock (:meth:`~saga_coordinator.store.SagaStore.lock_and_load`).

The cache is a hint, never the truth: the store checks that the fact the state was folded up
to is still the stream's fact at that position. A state remembered from a transaction that
then rolled back, or from before another replica moved the saga on, fails that check and the
whole stream is read again. A decision is recorded only at the position it was made on
(:meth:`~saga_coordinator.store.SagaStore.record`), so a stale state could not be written
through anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from saga_coordinator import legacy
from saga_coordinator.engine import facts as engine
from saga_coordinator.engine.state import SagaState, fold
from saga_coordinator.store import Decided, Fact, FactRef, SagaStore
from sagas.registry import SagaRegistry

DEFAULT_SIZE = 10_000
"""Sagas kept per process: a few MB; the least recently used go first."""


@dataclass(frozen=True, slots=True)
class Folded:
    """A saga's state and the stored fact it was folded up to."""

    state: SagaState
    last: FactRef


class SagaCache:
    """Folded sagas by key, least recently used dropped past ``size``. One per process, shared
    by its lanes and its timer loop (one event loop: no locking)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._sagas: OrderedDict[str, Folded] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Folded | None:
        found = self._sagas.get(key)
        if found is not None:
            self._sagas.move_to_end(key)
        return found

    def put(self, key: str, state: SagaState, last: Fact) -> None:
        """Remember ``state``, folded up to ``last`` (stored at position ``state.version``)."""
        self._sagas[key] = Folded(state, FactRef.of(state.version, last))
        self._sagas.move_to_end(key)
        while len(self._sagas) > self.size:
            self._sagas.popitem(last=False)

    def drop(self, key: str) -> None:
        self._sagas.pop(key, None)

    def __len__(self) -> int:
        return len(self._sagas)


@dataclass(slots=True)
class HeldSagas:
    """The sagas a batch's transaction locked and read ahead (:func:`read_ahead`): each of its
    messages folds what was read for it instead of a round trip of its own, and a saga's later
    messages in the batch take the state its earlier ones left (whose decisions may not be
    recorded yet: ``decided``). One per transaction."""

    locked: set[str] = field(default_factory=set)
    read: dict[str, tuple[FactRef | None, list[Fact] | None]] = field(default_factory=dict)
    states: dict[str, SagaState] = field(default_factory=dict)
    """Each saga's state as this transaction's messages left it."""
    decided: list[Decided] | None = None
    """The batch's decisions, recorded together when it ends; None: each at once."""

    def stream(self, key: str, after: FactRef | None) -> list[Fact] | None:
        """The facts read ahead for saga ``key``, if they were read from ``after`` (else None:
        only the whole stream can tell)."""
        read = self.read.pop(key, None)
        if read is None or read[0] != after:
            return None
        return read[1]


async def read_ahead(
    store: SagaStore, keys: Iterable[str], cache: SagaCache, held: HeldSagas
) -> None:
    """Lock the sagas ``keys`` name and read their facts after the remembered states, all in
    one round trip (:meth:`~saga_coordinator.store.SagaStore.lock_and_load_many`), for
    :func:`load_state` to take with ``held``."""
    wanted: dict[str, FactRef | None] = {}
    for key in keys:
        if key not in held.locked and key not in wanted:
            known = cache.get(key)
            wanted[key] = None if known is None else known.last
    if not wanted:
        return
    streams = await store.lock_and_load_many(wanted)
    held.locked.update(wanted)
    held.read.update((key, (wanted[key], stream)) for key, stream in streams.items())


async def load_state(
    store: SagaStore,
    key: str,
    definitions: SagaRegistry,
    cache: SagaCache,
    *,
    wait: bool = True,
    held: HeldSagas | None = None,
) -> SagaState | None:
    """Lock saga ``key`` and read its state: the remembered one and the facts after it while
    that holds, else the whole stream (then remembered). With ``wait`` False, None when another
    transaction holds the lock (see :meth:`~saga_coordinator.store.SagaStore.lock`). A saga
    ``held`` names is locked already: what was read ahead for it is used, or the state its
    batch's messages left."""
    known = cache.get(key)
    after = None if known is None else known.last
    if held is not None and key in held.locked:
        if key in held.states:
            return held.states[key]
        state = await _folded(store, key, definitions, cache, known, held.stream(key, after))
        held.states[key] = state
        return state
    if wait:
        stream = await store.lock_and_load(key, after)
    elif not await store.lock(key, wait=False):
        return None
    else:
        stream = await store.load(key) if after is None else await store.load_after(key, after)
    return await _folded(store, key, definitions, cache, known, stream)


async def _folded(
    store: SagaStore,
    key: str,
    definitions: SagaRegistry,
    cache: SagaCache,
    known: Folded | None,
    stream: list[Fact] | None,
) -> SagaState:
    """The state of saga ``key``, whose lock is held: ``known`` with the newer facts
    ``stream``, or (``known`` gone stale, ``stream`` None, or an old core's fact read) the whole
    stream's fold; remembered in ``cache``."""
    if known is not None and stream is not None:
        newer = [fact for fact in stream if isinstance(fact, engine.Fact)]
        if len(newer) == len(stream):  # an old core's fact needs the whole stream to read
            cache.hits += 1
            if not newer:
                return known.state
            state = fold(key, newer, start=known.state)
            cache.put(key, state, newer[-1])
            return state
    if known is not None or stream is None:
        stream = await store.load(key)  # gone stale, or not read yet; the lock is held already
    cache.misses += 1
    state = fold(key, legacy.read(stream, definitions))
    if stream:
        cache.put(key, state, stream[-1])
    return state
