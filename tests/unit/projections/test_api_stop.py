"""The API's stop keeps the budget every Choreo process's stop has (events.stopping): the first
SIGTERM begins it, and requests still running at the drain timeout are cancelled."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import uvicorn

from events.settings import Settings
from events.stopping import STOP
from projections import api


@pytest.fixture(autouse=True)
def no_stop_begun() -> Iterator[None]:
    STOP.reset()
    yield
    STOP.reset()  # and the last resort's thread stands down


async def _app(scope: object, receive: object, send: object) -> None:
    pass


def test_a_sigterm_begins_the_stop_budget_once() -> None:
    server = api._Server(uvicorn.Config(_app), Settings(stop_timeout_ms=5000))
    assert STOP.left(100.0) == 100.0  # no stop yet: a step's own timeout
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit
    assert 4.5 < STOP.left(100.0) <= 5.0
    server.handle_exit(signal.SIGTERM, None)  # again: the same stop, not a new budget
    assert server.should_exit
    assert not server.force_exit


def test_requests_in_hand_are_cancelled_at_the_drain_timeout() -> None:
    config = api.server_config(Settings(stop_drain_timeout_ms=2500), _app)
    assert config.timeout_graceful_shutdown == 3  # whole seconds, rounded up
