"""Offset commits (events/offsets.py) against a fake consumer: throttled, and flushed for the
partitions a rebalance revokes."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from events.offsets import CommitOnRevoke, OffsetCommits

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


class FakeConsumer:
    """Records every commit; fails the next one when asked."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_next = False

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise CommitFailedError("rebalanced")
        self.commits.append(dict(offsets))


async def test_a_flush_within_the_interval_commits_nothing_until_forced():
    consumer, commits = FakeConsumer(), OffsetCommits("test", interval_ms=3_600_000)
    commits.add({A0: 5})
    await commits.flush(consumer)
    assert consumer.commits == []
    commits.add({A0: 7, B0: 2})  # a later offset of the same partition replaces the earlier
    await commits.flush(consumer, force=True)
    assert consumer.commits == [{A0: 7, B0: 2}]
    await commits.flush(consumer, force=True)  # nothing pending: no round trip
    assert len(consumer.commits) == 1


async def test_a_flush_after_the_interval_commits(monkeypatch: pytest.MonkeyPatch):
    now = [1000.0]
    monkeypatch.setattr("events.offsets.time.monotonic", lambda: now[0])
    consumer, commits = FakeConsumer(), OffsetCommits("test", interval_ms=500)
    commits.add({A0: 1})
    now[0] += 0.4
    await commits.flush(consumer)
    assert consumer.commits == []
    now[0] += 0.2
    await commits.flush(consumer)
    assert consumer.commits == [{A0: 1}]
    commits.add({A0: 2})
    await commits.flush(consumer)  # the interval starts again at the last commit
    assert consumer.commits == [{A0: 1}]


async def test_revoked_partitions_are_committed_at_once_and_the_others_wait():
    consumer, commits = FakeConsumer(), OffsetCommits("test", interval_ms=3_600_000)
    listener = CommitOnRevoke(commits, consumer)
    commits.add({A0: 3, A1: 9, B0: 4})
    await listener.on_partitions_revoked({A0, B0})
    assert consumer.commits == [{A0: 3, B0: 4}]
    await listener.on_partitions_revoked({A0})  # nothing pending there any more
    assert len(consumer.commits) == 1
    await commits.flush(consumer, force=True)
    assert consumer.commits[-1] == {A1: 9}


async def test_a_failed_commit_is_logged_at_the_failure_level(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="choreo.runtime")
    consumer = FakeConsumer()
    commits = OffsetCommits("projector", interval_ms=0, failure_level=logging.DEBUG)
    consumer.fail_next = True
    commits.add({A0: 1})
    await CommitOnRevoke(commits, consumer).on_partitions_revoked([A0])
    [record] = [r for r in caplog.records if "could not commit" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert consumer.commits == []
