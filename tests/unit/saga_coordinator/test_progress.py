"""The sampled progress of Choreo's queues: when a group got to an instant's messages, how
long it could work, whether it passed a barrier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from saga_coordinator.progress import ProgressLog, Sample

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GROUP = "choreo.payment"
TOPIC = "choreo.order"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample(
    seconds: float, ends: tuple[int, int], seen: tuple[int, int], *, live: bool = True
) -> Sample:
    """Two partitions of the topic: their end offsets and the group's committed offsets."""
    return Sample(
        at=at(seconds),
        ends={(TOPIC, 0): ends[0], (TOPIC, 1): ends[1]},
        committed={GROUP: {(TOPIC, 0): seen[0], (TOPIC, 1): seen[1]}},
        live=frozenset({GROUP} if live else ()),
    )


def log_of(*samples: Sample) -> ProgressLog:
    progress = ProgressLog(keep=timedelta(minutes=5), stale=timedelta(seconds=2))
    for s in samples:
        progress.add(s)
    return progress


def test_a_group_reaches_a_record_once_it_consumed_every_record_before_it():
    progress = log_of(
        sample(0, (10, 4), (10, 4)),
        sample(1, (20, 9), (12, 9)),  # behind on partition 0
        sample(2, (25, 9), (19, 9)),
        sample(3, (25, 9), (25, 9)),
    )
    assert progress.reached(GROUP, (TOPIC, 0, 19), at(1.5)) == at(2)
    # Caught up before the record was sent at 0.5 s: got to it at once, not before.
    assert progress.reached(GROUP, (TOPIC, 1, 4), at(0.5)) == at(0.5)
    assert progress.reached(GROUP, (TOPIC, 0, 22), at(1.5)) == at(3)
    assert progress.reached(GROUP, (TOPIC, 0, 26), at(2)) is None
    # A log that starts later measures from its first sample.
    assert log_of(sample(10, (30, 30), (30, 30))).reached(GROUP, (TOPIC, 0, 5), at(2)) == at(10)


def test_a_group_has_handled_a_message_once_it_consumed_what_the_topic_then_held():
    progress = log_of(
        sample(0, (10, 4), (10, 4)),
        sample(1, (20, 9), (12, 9)),
        sample(2, (25, 9), (20, 9)),  # past what the topic held at 1 s
    )
    assert progress.handled(GROUP, TOPIC, at(0.5)) == at(2)
    assert progress.handled(GROUP, TOPIC, at(1.5)) is None
    assert progress.handled(GROUP, TOPIC, at(9)) is None


def test_working_time_leaves_out_outages_and_time_without_a_live_member():
    progress = log_of(
        sample(0, (1, 1), (1, 1)),
        sample(1, (1, 1), (1, 1)),
        sample(2, (1, 1), (1, 1), live=False),  # killed: its group has no member consuming
        sample(3, (1, 1), (1, 1), live=False),
        sample(4, (1, 1), (1, 1)),
        sample(5, (1, 1), (1, 1)),
        # the broker does not answer from 5 s to 15 s
        sample(15, (1, 1), (1, 1)),
        sample(16, (1, 1), (1, 1)),
    )
    assert progress.working(GROUP, at(0), at(16)) == timedelta(seconds=3)
    assert progress.working(GROUP, at(0.5), at(1)) == timedelta(seconds=0.5)
    # Since the latest sample, while it is fresh, the group works on.
    assert progress.working(GROUP, at(15), at(17)) == timedelta(seconds=2)
    assert progress.working(GROUP, at(15), at(30)) == timedelta(seconds=1)  # stale: not counted


def test_caught_up_compares_the_latest_sample_with_a_barrier():
    progress = log_of(sample(0, (10, 4), (3, 4)), sample(1, (12, 6), (10, 4)))
    assert progress.caught_up(GROUP, {(TOPIC, 0): 10, (TOPIC, 1): 4})
    assert not progress.caught_up(GROUP, {(TOPIC, 0): 10, (TOPIC, 1): 5})
    assert progress.first_at_or_after(at(0.5)) == progress.samples[1]
    assert progress.fresh(at(2))
    assert not progress.fresh(at(3.5))


def test_old_samples_are_dropped():
    progress = ProgressLog(keep=timedelta(seconds=10), stale=timedelta(seconds=2))
    for second in range(30):
        progress.add(sample(second, (1, 1), (1, 1)))
    assert progress.samples[0].at == at(19)


def test_a_group_nobody_runs_and_that_never_consumed_the_topic_is_unknown():
    progress = log_of(sample(0, (1, 1), (1, 1)))
    assert progress.knows(GROUP, TOPIC)
    assert not progress.knows("choreo.nobody", TOPIC)
    assert not ProgressLog(keep=timedelta(1), stale=timedelta(1)).knows(GROUP, TOPIC)


def test_a_group_once_seen_stays_known_when_a_reading_shows_it_empty():
    """Regression: right after a broker restart a group read as empty (no offsets, no
    member), and its participant's deadlines fell back to their due time."""
    progress = log_of(sample(0, (1, 1), (1, 1)))
    progress.add(Sample(at(1), {(TOPIC, 0): 1}, {GROUP: {}}, frozenset()))
    assert progress.knows(GROUP, TOPIC)
