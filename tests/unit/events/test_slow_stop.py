"""A process whose stop hangs logs, while it waits, which task waits on what; one that stops
at once logs no such line."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from events.stopping import pending_tasks, report_slow_stop


async def _waiting_for_the_broker(gate: asyncio.Event) -> None:
    await gate.wait()


async def test_a_pending_task_is_named_with_what_it_awaits():
    gate = asyncio.Event()
    task = asyncio.create_task(_waiting_for_the_broker(gate), name="leave-group")
    await asyncio.sleep(0)
    try:
        [line] = [line for line in pending_tasks() if line.startswith("leave-group:")]
        assert "test_slow_stop.py" in line
        # Down the await chain to what it waits on: the event, in asyncio's locks module.
        assert re.search(r"test_slow_stop\.py:\d+ _waiting_for_the_broker > locks\.py:\d+", line)
        assert line.endswith(" wait")
    finally:
        gate.set()
        await task
    assert not [line for line in pending_tasks() if line.startswith("leave-group:")]


async def test_the_report_repeats_until_cancelled(caplog):
    gate = asyncio.Event()
    task = asyncio.create_task(_waiting_for_the_broker(gate), name="commit")
    with caplog.at_level(logging.WARNING, logger="choreo.service"):
        library = asyncio.create_task(asyncio.sleep(1), name="Task-0")  # listed after
        reporting = asyncio.create_task(report_slow_stop("payment", 0.01, stopping=task))
        await asyncio.sleep(0.035)
        reporting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reporting
        gate.set()
        await task
        library.cancel()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) >= 2
    # The stopping task first, whatever its name sorts as.
    assert re.match(r"payment still stopping after 0\.\d s; waiting on: commit: ", messages[0])
    assert all("_waiting_for_the_broker" in m and "; Task-0: " in m for m in messages)
    assert not any("report_slow_stop" in m for m in messages)  # not itself


PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from events.service import run_process
    from events.settings import Settings

    class Stuck:
        def __init__(self): self.stopping = asyncio.Event()
        async def start(self): pass
        async def run(self): await self.stopping.wait()
        async def stop(self):
            await asyncio.sleep(float(sys.argv[1]))  # e.g. a LeaveGroup the broker holds
            self.stopping.set()
        async def close(self): pass

    run_process("stuck", Settings(), Stuck, ready=lambda _: "idle")
    """
)


def _stop(hang_s: float, process: str = PROCESS, exit_code: int = 0, **settings: str) -> str:
    """Run a process whose stop takes ``hang_s``, SIGTERM it once ready; its log."""
    env = {**os.environ, "CHOREO_STOP_REPORT_S": "0.2", "CHOREO_LOG_FORMAT": "text",
           "CHOREO_TRACING_ENABLED": "false", "CHOREO_METRICS_ENABLED": "false",
           **settings}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", process, str(hang_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        lines.append(line)
        if "stuck ready" in line:
            proc.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, lines
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == exit_code, "".join(lines) + out
    return "".join(lines) + out


def test_a_hanging_stop_says_where_it_hangs():
    log = _stop(hang_s=0.7)
    assert "stuck stopping: finishing the batch in hand" in log
    reports = [line for line in log.splitlines() if "still stopping after" in line]
    assert len(reports) >= 2, log
    # The main task is in the process's stop, which is in a sleep.
    assert "Task-1: service.py:" in reports[0], reports[0]
    assert " main > service.py:" in reports[0], reports[0]
    assert " _stop_within_budget > <string>:" in reports[0], reports[0]
    assert " stop > tasks.py:" in reports[0], reports[0]
    assert reports[0].split("; ")[1].endswith(" sleep"), reports[0]
    assert log.rstrip().endswith("stuck stopped"), log


def test_a_quick_stop_reports_nothing():
    log = _stop(hang_s=0)
    assert "stuck stopped" in log
    assert "still stopping" not in log, log


def test_a_stop_past_its_budget_is_cut_short():
    # Its own stop would take a minute: the budget (1 s) ends it, saying so, and it exits.
    started = time.monotonic()
    log = _stop(hang_s=60, CHOREO_STOP_TIMEOUT_MS="1000")
    assert time.monotonic() - started < 20, log
    assert "stuck did not stop within its stop timeout; cancelling what is left" in log, log
    assert log.rstrip().endswith("stuck stopped"), log


UNCANCELLABLE = PROCESS.replace(
    "async def run(self): await self.stopping.wait()",
    textwrap.dedent(
        """async def run(self):
            while True:  # a cleanup that waits on a database that never answers
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    pass"""
    ).replace("\n", "\n    "),
)


def test_a_process_that_cannot_stop_is_ended_from_a_thread():
    # Not even cancelling its run ends it, and its loop cannot close: past the budget (0.5 s)
    # and the margins (2 s), the last resort ends it, saying so, with its own exit code.
    started = time.monotonic()
    log = _stop(hang_s=0, process=UNCANCELLABLE, exit_code=3, CHOREO_STOP_TIMEOUT_MS="500")
    took_s = time.monotonic() - started
    assert "stuck:run did not end when cancelled; leaving it" in log, log
    assert "stuck did not exit within its stop timeout (0.5 s) and its margins; exiting now" in log
    assert took_s < 15, log
