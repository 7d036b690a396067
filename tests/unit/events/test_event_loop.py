"""Which event loop Choreo's processes run on."""

from __future__ import annotations

import asyncio

import uvloop

from events.service import event_loop_factory
from events.settings import Settings


def test_processes_run_on_uvloop_unless_told_otherwise():
    factory = event_loop_factory(Settings())
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert event_loop_factory(Settings(event_loop="asyncio")) is None


def test_a_process_on_uvloop_runs_coroutines_and_signal_handlers():
    with asyncio.Runner(loop_factory=event_loop_factory(Settings())) as runner:

        async def main() -> str:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            loop.add_signal_handler(15, stop.set)
            loop.call_later(0.01, stop.set)
            await asyncio.wait_for(stop.wait(), 5)
            loop.remove_signal_handler(15)
            return type(loop).__module__

        assert runner.run(main()).startswith("uvloop")
