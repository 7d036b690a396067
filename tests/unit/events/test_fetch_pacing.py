"""Fetch pacing: the broker may hold a consumer's fetch to gather records; always (the
projector), only while records arrive fast (the saga's consumers), or never."""

from __future__ import annotations

import inspect
from typing import Any, cast

import pytest

from contracts.catalog import CATALOG
from events import consumer as consumer_module
from events.batches import Poll
from events.codec import Codec
from events.consumer import EventConsumer, PollLoop
from events.delivery import DirectDelivery
from events.fetch_pacing import (
    ANSWER_AT_ONCE,
    FETCH_BATCH_BYTES,
    FETCHER_FIELDS,
    RATE_WINDOW_S,
    ArrivalRate,
    FetchPacing,
    can_repace,
    repace,
)
from events.producer import EventProducer
from events.router import Router
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


async def start_loop(pacing: FetchPacing | None) -> PollLoop:
    async def process(poll: Poll) -> None:
        raise AssertionError("never polled here")

    poller = PollLoop(
        name="t", group_id="g", topics=["t"], settings=get_settings(), process=process,
        max_records=10, pacing=pacing,
    )  # fmt: skip
    await poller.start()
    await poller.stop()
    return poller


async def test_a_loop_that_always_waits_lets_the_broker_gather_records(
    made: list[dict[str, Any]],
) -> None:
    await start_loop(FetchPacing(wait_ms=50))
    assert made[0]["fetch_max_wait_ms"] == 50
    # Large enough that the wait, not the first record, ends a fetch at low load.
    assert made[0]["fetch_min_bytes"] == FETCH_BATCH_BYTES >= 512 * 1024


@pytest.mark.parametrize("pacing", [None, FetchPacing(0), FetchPacing(50, above_per_s=60)])
async def test_other_loops_start_answered_at_the_first_record(
    made: list[dict[str, Any]], pacing: FetchPacing | None
) -> None:
    await start_loop(pacing)
    assert made[0]["fetch_min_bytes"] == 1
    assert made[0]["fetch_max_wait_ms"] == ANSWER_AT_ONCE["fetch_max_wait_ms"]


async def test_a_consumer_that_cannot_be_repaced_is_left_answered_at_once(
    made: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # RecordingConsumer has no aiokafka Fetcher: pacing is an optimisation, never a failure.
    poller = await start_loop(FetchPacing(50, above_per_s=60))
    assert poller.arrivals is None
    assert "cannot hold fetches" in caplog.text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_holding_starts_above_the_rate_and_stops_below_half_of_it() -> None:
    clock = Clock()
    rate = ArrivalRate(FetchPacing(50, above_per_s=60), clock)
    window = RATE_WINDOW_S

    def one_window(per_s: float) -> bool | None:
        rate.observe(int(per_s * window / 2))
        clock.now += window
        return rate.observe(int(per_s * window / 2))

    assert (one_window(40), rate.holding) == (None, False)
    assert (one_window(80), rate.holding) == (True, True)
    assert rate.per_s == pytest.approx(80)
    # Between half the threshold and the threshold it keeps holding: no flapping.
    assert (one_window(45), rate.holding) == (None, True)
    assert (one_window(20), rate.holding) == (False, False)
    assert (one_window(45), rate.holding) == (None, False)


def test_the_rate_is_measured_over_a_whole_window() -> None:
    clock = Clock()
    rate = ArrivalRate(FetchPacing(50, above_per_s=60), clock)
    clock.now += RATE_WINDOW_S / 10
    # A burst inside a window is not a rate yet.
    assert (rate.observe(1000), rate.holding) == (None, False)
    clock.now += RATE_WINDOW_S
    assert rate.observe(0) is True


def test_options_hold_or_answer_at_once() -> None:
    pacing = FetchPacing(40, above_per_s=10)
    assert pacing.options(holding=True) == {
        "fetch_max_wait_ms": 40,
        "fetch_min_bytes": FETCH_BATCH_BYTES,
    }
    assert pacing.options(holding=False) == ANSWER_AT_ONCE
    assert FetchPacing(0).options(holding=True) == ANSWER_AT_ONCE


async def test_a_started_aiokafka_consumer_is_repaced_in_its_fetcher() -> None:
    # The one private thing pacing relies on: aiokafka's Fetcher keeps the two options in these
    # fields and reads them when it builds each fetch request. An aiokafka that moves them
    # fails here, not in production.
    from aiokafka.consumer.fetcher import Fetcher

    kept = inspect.getsource(Fetcher.__init__)
    read = inspect.getsource(Fetcher._get_actions_per_node)  # builds the FetchRequests
    for option, field in FETCHER_FIELDS.items():
        assert f"self.{field} = {option}" in kept
        assert f"self.{field}," in read.partition("FetchRequest(")[2]

    class Started:
        _fetcher = Fetcher.__new__(Fetcher)

    Started._fetcher._fetch_max_wait_ms = 500
    Started._fetcher._fetch_min_bytes = 1
    assert can_repace(Started())
    repace(Started(), FetchPacing(30).options(holding=True))
    assert Started._fetcher._fetch_max_wait_ms == 30
    assert Started._fetcher._fetch_min_bytes == FETCH_BATCH_BYTES
    assert not can_repace(object())


@pytest.mark.parametrize("wait_ms", [0, 80])
async def test_the_projector_waits_as_configured(
    wait_ms: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_PROJECTOR_FETCH_WAIT_MS", str(wait_ms))
    projector = Projector(Settings())
    try:
        assert projector.poller.pacing == FetchPacing(wait_ms)
    finally:
        await projector.close()


def test_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROJECTOR_FETCH_WAIT_MS", "CONSUMER_FETCH_WAIT_MS"):
        monkeypatch.delenv(f"CHOREO_{name}", raising=False)
    monkeypatch.delenv("CHOREO_CONSUMER_FETCH_WAIT_ABOVE_PER_S", raising=False)
    settings = Settings()
    assert settings.projector_fetch_wait_ms == 100
    assert (settings.consumer_fetch_wait_ms, settings.consumer_fetch_wait_above_per_s) == (50, 300)


def test_the_saga_consumers_pace_as_configured(codec: Codec) -> None:
    settings = get_settings().model_copy(
        update={"consumer_fetch_wait_ms": 30, "consumer_fetch_wait_above_per_s": 120.0}
    )
    producer = cast(EventProducer, None)  # never used: nothing is consumed here
    consumer = EventConsumer(
        name="t", group_id="g", router=Router("t", CATALOG), codec=codec, producer=producer,
        delivery=DirectDelivery(producer, None, "t"), settings=settings,
    )  # fmt: skip
    assert consumer.poller.pacing == FetchPacing(30, above_per_s=120.0)
    assert consumer.poller.pacing.adaptive
