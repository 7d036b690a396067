"""A stop ends within its budget when the broker or the database does not answer: the poll in
hand is cancelled after the drain timeout, a commit in flight after the close timeout, and the
last steps (the producer's flush, the pool's close) after what is left of the budget; each says
what it gave up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from events.batches import Poll
from events.settings import Settings
from events.stopping import STEP_MIN_S, STOP, close_within, end_within
from tests.unit.events.fake_broker import FakeBroker, poll_loop

TP = TopicPartition("t", 0)
RECORD = {TP: [SimpleNamespace(topic="t", partition=0, offset=41)]}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged at WARNING or above (the loggers' levels depend on the tests before)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def no_stop_begun() -> Iterator[None]:
    STOP.reset()
    yield
    STOP.reset()


async def test_a_poll_in_hand_that_hangs_is_cancelled_after_the_drain_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    in_hand = asyncio.Event()
    cancelled = []

    async def process(poll: Poll) -> None:  # a publish the broker never acknowledges
        in_hand.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(list(poll))
            raise

    broker = FakeBroker(records=RECORD)
    poller = poll_loop(monkeypatch, broker, process, Settings(stop_drain_timeout_ms=300))
    running = asyncio.create_task(poller.run())
    await asyncio.wait_for(in_hand.wait(), 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="choreo.runtime"):
        await asyncio.wait_for(poller.stop(), 5)
    took_s = loop.time() - started
    await running  # the loop's own task ends as a stopped loop does, not cancelled
    assert 0.3 <= took_s < 1.5
    assert cancelled == [[TP]]
    assert broker.committed == []  # the record in hand was not delivered: read again later
    assert (
        "crm: the poll in hand did not end within 0.3 s of the stop; cancelling it (what it did"
        " not commit is read again after the restart)" in warnings(caplog)
    )


async def test_a_poll_that_ends_in_time_is_not_cancelled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    done: list[bool] = []

    async def process(poll: Poll) -> None:
        await asyncio.sleep(0.05)
        await poller.delivered({TP: 42})
        done.append(True)

    broker = FakeBroker(records=RECORD)
    poller = poll_loop(monkeypatch, broker, process, Settings(stop_drain_timeout_ms=2000))
    running = asyncio.create_task(poller.run())
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="choreo.runtime"):
        await asyncio.wait_for(poller.stop(), 5)
    await running
    assert done == [True]
    assert broker.committed[-1] == {TP: 42}
    assert warnings(caplog) == []


async def test_a_commit_in_flight_is_cancelled_within_the_close_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def process(poll: Poll) -> None:
        await poller.delivered({TP: 42})  # the commit of this never returns

    broker = FakeBroker(records=RECORD, hangs=frozenset({"commit"}))
    settings = Settings(
        consumer_commit_interval_ms=10, consumer_close_timeout_ms=500, stop_drain_timeout_ms=200
    )
    poller = poll_loop(monkeypatch, broker, process, settings)
    running = asyncio.create_task(poller.run())
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="choreo.runtime"):
        await asyncio.wait_for(poller.stop(), 5)
    took_s = loop.time() - started
    await running
    # The drain (the poll is stuck in its commit) and then the close timeout, not forever.
    assert took_s < 2.0
    assert any("did not end within" in m for m in warnings(caplog)), warnings(caplog)


def test_a_step_gets_its_own_timeout_until_a_stop_begins() -> None:
    assert STOP.left(3.0) == 3.0
    assert STOP.left(0.0) == STEP_MIN_S  # a step always begins
    STOP.begin(1.0)
    assert 0.9 < STOP.left(3.0) <= 1.0  # what is left of the budget
    assert STOP.left(0.5) == 0.5  # or its own, if less
    STOP.begin(-1.0)  # spent
    assert STOP.left(3.0) == STEP_MIN_S


async def test_tasks_that_do_not_end_are_cancelled_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quick = asyncio.create_task(asyncio.sleep(0), name="svc:relay")
    stuck = asyncio.create_task(asyncio.Event().wait(), name="svc:timers")
    with caplog.at_level(logging.WARNING, logger="choreo.service"):
        await asyncio.wait_for(end_within([quick, stuck], 0.2, "svc"), 5)
    assert quick.done()
    assert not quick.cancelled()
    assert stuck.cancelled()
    assert warnings(caplog) == [
        "svc: svc:timers did not end within 0.2 s of the stop; cancelling it"
    ]


async def test_a_task_error_is_raised_as_awaiting_it_would() -> None:
    async def fails() -> None:
        raise RuntimeError("relay broke")

    with pytest.raises(RuntimeError, match="relay broke"):
        await end_within([asyncio.create_task(fails())], 1.0, "svc")


async def test_a_close_that_does_not_answer_is_given_up_with_what_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    STOP.begin(0.3)  # less than the 2 s a close may take on its own
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="choreo.service"):
        await close_within(asyncio.Event().wait(), "producer crm", "it stays in the outbox")
    assert 0.25 <= loop.time() - started < 1.0
    assert warnings(caplog) == [
        "producer crm did not close within 0.3 s; going on without (it stays in the outbox)"
    ]


async def _uncancellable(released: asyncio.Event) -> None:
    """A cleanup that waits on what never answers: cancelling it does not end it."""
    while not released.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await released.wait()


async def test_a_task_that_does_not_end_when_cancelled_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = asyncio.Event()
    stuck = asyncio.create_task(_uncancellable(released), name="svc:consumer")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="choreo.service"):
        await asyncio.wait_for(end_within([stuck], 0.1, "svc"), 5)
    assert loop.time() - started < 2.0  # 0.1 s, then 1 s for the cancelled task to end
    assert not stuck.done()
    assert warnings(caplog) == [
        "svc: svc:consumer did not end within 0.1 s of the stop; cancelling it",
        "svc: svc:consumer did not end when cancelled; leaving it",
    ]
    released.set()
    await stuck


async def test_a_poll_whose_cleanup_hangs_is_left_and_the_stop_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    released, in_hand = asyncio.Event(), asyncio.Event()

    async def process(poll: Poll) -> None:  # its rollback waits on a database that is gone
        in_hand.set()
        await _uncancellable(released)

    broker = FakeBroker(records=RECORD)
    settings = Settings(stop_drain_timeout_ms=200, consumer_close_timeout_ms=300)
    poller = poll_loop(monkeypatch, broker, process, settings)
    running = asyncio.create_task(poller.run())
    await asyncio.wait_for(in_hand.wait(), 5)
    with caplog.at_level(logging.WARNING, logger="choreo.runtime"):
        await asyncio.wait_for(poller.stop(), 5)  # not forever
    assert "crm: the poll in hand did not end when cancelled; leaving it" in warnings(caplog)
    assert not poller.started  # the consumer was closed (it left the group)
    released.set()
    await running


async def test_a_cancelled_poll_that_ends_late_does_not_restart_the_close_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The close timeout starts once, when the drain gives up: a poll whose cleanup ends
    within it leaves the close steps what is left of it, not a whole timeout again."""
    in_hand = asyncio.Event()

    async def process(poll: Poll) -> None:
        await poller.delivered({TP: 42})  # the commit of this never returns
        in_hand.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.9)  # a rollback that takes its time
            raise

    broker = FakeBroker(records=RECORD, hangs=frozenset({"commit"}))
    settings = Settings(
        consumer_commit_interval_ms=10, consumer_close_timeout_ms=1000, stop_drain_timeout_ms=200
    )
    poller = poll_loop(monkeypatch, broker, process, settings)
    running = asyncio.create_task(poller.run())
    await asyncio.wait_for(in_hand.wait(), 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(poller.stop(), 5)
    await asyncio.wait_for(running, 5)
    # Drain 0.2 s, then the close timeout's 1 s for everything after it: the loop's end at
    # about 1.3 s (its last commit's minimum step past it), not 2.2 s (1 s again from 1.1 s).
    assert loop.time() - started < 1.7
