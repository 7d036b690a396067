"""A stand-in for the consumer a :class:`~events.consumer.PollLoop` makes, for stopping tests: the
broker hands out some records once and never answers the calls it is told to hang on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from events import consumer as consumer_module
from events.consumer import PollLoop, PollProcessor
from events.settings import Settings


class FakeBroker:
    """Hands out ``records`` on the first poll (none after); never answers the calls named in
    ``hangs`` (``commit``, ``stop``: the LeaveGroup)."""

    def __init__(
        self,
        *,
        hangs: frozenset[str] = frozenset(),
        records: dict[TopicPartition, list[Any]] | None = None,
    ) -> None:
        self.hangs = hangs
        self.records = records or {}
        self.calls: list[str] = []
        self.committed: list[dict[TopicPartition, int]] = []

    async def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.hangs:
            await asyncio.Event().wait()

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def getmany(self, **kwargs: Any) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.001)
        records, self.records = self.records, {}
        return records

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self._call("commit")
        self.committed.append(dict(offsets))

    async def stop(self) -> None:
        await self._call("stop")


def poll_loop(
    monkeypatch: pytest.MonkeyPatch,
    broker: FakeBroker,
    process: PollProcessor,
    settings: Settings,
) -> PollLoop:
    """A poll loop named ``crm`` whose consumer is ``broker``."""
    monkeypatch.setattr(consumer_module, "AIOKafkaConsumer", lambda **_: broker)
    return PollLoop(
        name="crm", group_id="g", topics=["t"], settings=settings, process=process,
        max_records=10,
    )  # fmt: skip
