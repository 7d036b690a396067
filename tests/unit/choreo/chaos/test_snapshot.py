"""Which deadlines cancelled a saga, read from its facts."""

from __future__ import annotations

from datetime import UTC, datetime

from choreo.chaos.snapshot import deadlines_passed
from saga_coordinator.engine.facts import StepFailed, StepSucceeded, TaskDecided

AT = datetime(2026, 12, 2, 19, 19, tzinfo=UTC)


def test_a_deadline_is_seen_even_when_the_late_answer_came_after_it():
    # What a chaos run found: inventory's deadline cancelled the order (as out_of_stock), then
    # its reservation arrived; the folded state says the step succeeded.
    facts = [
        StepFailed(at=AT, step="inventory", detail="no answer within 30s", reason="out_of_stock",
                   deadline="answer"),
        StepSucceeded(at=AT, step="inventory", captured={"reservation_id": "res-1"}),
    ]  # fmt: skip
    assert deadlines_passed(facts) == ("inventory",)


def test_a_failure_answered_by_the_participant_or_an_optional_step_is_no_deadline():
    facts = [
        StepFailed(at=AT, step="payment", detail="declined", reason="payment_declined"),
        StepFailed(at=AT, step="email", detail="no answer within 15s", deadline="answer"),
    ]
    assert deadlines_passed(facts) == ()


def test_a_task_that_timed_out_is_a_deadline():
    facts = [TaskDecided(at=AT, task="approval", outcome="timed_out")]
    assert deadlines_passed(facts) == ("approval",)
