"""A poll loop's fetch wait: the broker gathers records for a while instead of answering each
fetch at the first one (the projector's setting); every other loop is answered at once."""

from __future__ import annotations

from typing import Any

import pytest

from events import consumer as consumer_module
from events.batches import Poll
from events.consumer import FETCH_BATCH_BYTES, PollLoop
from events.settings import Settings, get_settings
from projections.projector import Projector


class RecordingConsumer:
    """Stands in for AIOKafkaConsumer: remembers how it was configured."""

    made: list[dict[str, Any]] = []

    def __init__(self, **options: Any) -> None:
        self.made.append(options)

    def subscribe(self, topics: list[str], listener: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    RecordingConsumer.made = []
    monkeypatch.setattr(consumer_module, "AIOKafkaConsumer", RecordingConsumer)
    return RecordingConsumer.made


async def start_loop(fetch_wait_ms: int) -> None:
    async def process(poll: Poll) -> None:
        raise AssertionError("never polled here")

    poller = PollLoop(
        name="t", group_id="g", topics=["t"], settings=get_settings(), process=process,
        max_records=10, fetch_wait_ms=fetch_wait_ms,
    )  # fmt: skip
    await poller.start()
    await poller.stop()


async def test_a_loop_with_a_fetch_wait_lets_the_broker_gather_records(
    made: list[dict[str, Any]],
) -> None:
    await start_loop(fetch_wait_ms=50)
    assert made[0]["fetch_max_wait_ms"] == 50
    # Large enough that the wait, not the first record, ends a fetch at low load.
    assert made[0]["fetch_min_bytes"] == FETCH_BATCH_BYTES >= 512 * 1024


async def test_a_loop_without_one_is_answered_at_the_first_record(
    made: list[dict[str, Any]],
) -> None:
    await start_loop(fetch_wait_ms=0)
    # aiokafka's defaults: min 1 byte, so the broker answers as soon as a record is there.
    assert "fetch_min_bytes" not in made[0]
    assert "fetch_max_wait_ms" not in made[0]


@pytest.mark.parametrize("wait_ms", [0, 80])
async def test_the_projector_waits_as_configured(
    wait_ms: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_PROJECTOR_FETCH_WAIT_MS", str(wait_ms))
    projector = Projector(Settings())
    try:
        assert projector.poller.fetch_wait_ms == wait_ms
    finally:
        await projector.close()


def test_the_projector_waits_100_ms_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHOREO_PROJECTOR_FETCH_WAIT_MS", raising=False)
    assert Settings().projector_fetch_wait_ms == 100
