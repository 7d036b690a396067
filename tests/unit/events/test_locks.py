"""The batch scope that locks a batch's saga keys before its handlers (events/locks.py)."""

from __future__ import annotations

from collections.abc import Sequence

from contracts.samples import sample_order_placed
from events.locks import saga_keys_locked_first
from events.model import Message


async def test_the_batch_scope_locks_the_saga_keys_before_the_handlers_run():
    happened: list[object] = []

    async def lock(context: str, keys: Sequence[str]) -> None:
        happened.append((context, list(keys)))

    scope = saga_keys_locked_first(lock)
    messages = [
        Message.first(sample_order_placed(), saga_type="order", saga_key=key, producer="test")
        for key in ("ord-2", "ord-1")
    ]
    async with scope("the batch's context", messages):
        happened.append("handlers")
    assert happened == [("the batch's context", ["ord-2", "ord-1"]), "handlers"]
