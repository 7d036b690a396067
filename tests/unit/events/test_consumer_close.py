"""A stopping consumer whose broker does not answer its last commit or its LeaveGroup goes on
without them after the close timeout, saying so, instead of outliving its grace period."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import TopicPartition

from events.batches import Poll
from events.settings import Settings
from tests.unit.events.fake_broker import FakeBroker, poll_loop


async def stop_a_running_loop(
    monkeypatch: pytest.MonkeyPatch, hangs: set[str]
) -> tuple[FakeBroker, float]:
    """Run a poll loop with an offset pending, stop it; the consumer and the stop's seconds."""
    made = FakeBroker(hangs=frozenset(hangs))

    async def process(poll: Poll) -> None:
        raise AssertionError("never polled here")

    settings = Settings(consumer_close_timeout_ms=1000, consumer_commit_interval_ms=60_000)
    poller = poll_loop(monkeypatch, made, process, settings)
    await poller.start()
    running = asyncio.create_task(poller.run())
    await poller.delivered({TopicPartition("t", 0): 7})  # pending: the interval is long
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(poller.stop(), 5)
    await running
    return made, loop.time() - started


@pytest.mark.parametrize(
    ("hangs", "skipped"),
    [({"commit"}, "the last offset commit"), ({"stop"}, "leaving the group")],
)
async def test_an_unanswered_step_is_given_up_after_the_close_timeout(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hangs: set[str],
    skipped: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="choreo.runtime"):
        made, took_s = await stop_a_running_loop(monkeypatch, hangs)
    assert made.calls == ["commit", "stop"]  # the other step still ran
    assert 1 <= took_s < 1.8  # the timeout, not the step's own wait (forever)
    [warning] = [r.getMessage() for r in caplog.records if "stopping without it" in r.getMessage()]
    assert warning == (
        f"crm: {skipped} did not end within the close timeout (1.0 s left of it); stopping"
        " without it"
    )


async def test_the_commit_and_the_leave_share_one_close_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Neither answered: the stop takes the timeout once (and the leave a moment to begin),
    # not once per step.
    with caplog.at_level(logging.WARNING, logger="choreo.runtime"):
        made, took_s = await stop_a_running_loop(monkeypatch, {"commit", "stop"})
    assert made.calls == ["commit", "stop"]
    assert 1 <= took_s < 1.8  # once (1.1 s), not twice (2 s)
    skipped = [r.getMessage() for r in caplog.records if "stopping without it" in r.getMessage()]
    assert [m.split(" did not")[0] for m in skipped] == [
        "crm: the last offset commit",
        "crm: leaving the group",
    ]


async def test_an_answered_stop_commits_and_leaves_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="choreo.runtime"):
        made, _ = await stop_a_running_loop(monkeypatch, set())
    assert made.calls == ["commit", "stop"]
    assert "stopping without it" not in caplog.text
