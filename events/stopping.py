"""A stop that ends in time, and says what it waits on while it waits.

A graceful stop finishes the batch in hand, commits, leaves the consumer group and closes the
producer and the pool; each of those waits on the broker or the database. A supervisor kills a
process that does not exit within its grace period, and then nothing says which of them hung.
:func:`report_slow_stop` logs every pending task's await chain at an interval until the stop
ends, so the log of a stop that hangs says where. :data:`STOP` bounds the whole stop: each
step waits at most its own timeout and what is left of the budget (:func:`end_within`,
:func:`close_within`), and a thread ends a process that still has not exited past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Collection, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, cast

log = logging.getLogger("choreo.service")

# Enough of a chain to see what awaits what (innermost last), short enough to stay one line.
FRAMES_PER_TASK = 6


def pending_tasks(
    exclude: set[asyncio.Task[Any]] | None = None, first: asyncio.Task[Any] | None = None
) -> list[str]:
    """Each pending task of the running loop as ``name: outer > ... > innermost``: its await
    chain as ``file:line function``, innermost last (what it waits on). ``first`` (the task
    running the stop) leads, then the tasks Choreo named, then the libraries' (``Task-N``)."""
    skip = exclude or set()

    def rank(task: asyncio.Task[Any]) -> tuple[bool, bool, str]:
        name = task.get_name()
        return (task is not first, name.startswith("Task-"), name)

    lines = []
    for task in sorted(asyncio.all_tasks(), key=rank):
        if task in skip or task.done():
            continue
        chain = " > ".join(
            f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"
            for frame in await_chain(task)[-FRAMES_PER_TASK:]
        )
        lines.append(f"{task.get_name()}: {chain or '(not started)'}")
    return lines


def await_chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of ``task``'s coroutine and of what each awaits, outermost first.

    ``Task.get_stack`` gives a suspended coroutine's own frame only (it follows ``f_back``,
    which a suspended coroutine does not have); what it waits on is down its ``cr_await``.
    """
    frames = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = next((getattr(awaited, a) for a in _FRAME if getattr(awaited, a, None)), None)
        if frame is None:  # a future, or a C-level awaitable: the end of what can be seen
            break
        frames.append(frame)
        awaited = next((getattr(awaited, a) for a in _AWAITS if hasattr(awaited, a)), None)
    return frames


# A coroutine's, a generator-based coroutine's and an async generator's frame and awaitee.
_FRAME = ("cr_frame", "gi_frame", "ag_frame")
_AWAITS = ("cr_await", "gi_yieldfrom", "ag_await")


async def report_slow_stop(
    name: str, every_s: float, stopping: asyncio.Task[Any] | None = None
) -> None:
    """Log what ``name`` still waits on every ``every_s`` seconds, until cancelled (when the
    stop is done), ``stopping`` (the task running the stop) first. Runs beside the stop."""
    me = asyncio.current_task()
    clock = asyncio.get_running_loop().time
    since = clock()
    while True:
        await asyncio.sleep(every_s)
        waited = clock() - since  # not the sum of the sleeps: a busy loop wakes them late
        others = pending_tasks(exclude={me} if me is not None else None, first=stopping)
        log.warning(
            "%s still stopping after %.1f s; waiting on: %s", name, waited, "; ".join(others)
        )


def watch_stop(name: str, every_s: float, *, signalled: bool) -> asyncio.Task[None] | None:
    """Say that ``name`` is stopping (when a signal asked it to) and start reporting what the
    stop waits on every ``every_s`` seconds (none when 0), the calling task first; cancel the
    task once stopped."""
    if signalled:
        log.info("%s stopping: finishing the batch in hand", name)
    if every_s <= 0:
        return None
    report = report_slow_stop(name, every_s, asyncio.current_task())
    return asyncio.create_task(report, name=f"{name}:stop-report")


STEP_MIN_S = 0.1
"""The least a step of a stop is given, however little of the budget is left: enough for it to
begin (aiokafka marks its consumer closed and stops its tasks before it sends the LeaveGroup)."""

BACKSTOP_MARGIN_S = 1.0
"""How far past its budget a stop may go before what is left of it is cancelled."""

LAST_RESORT_S = 1.0
"""How far past the budget and the backstop's margin the process is ended from a thread."""

STOP_TIMEOUT_EXIT_CODE = 3
"""A process ended by the last resort exits with this (a clean stop with 0)."""

CANCELLED_END_S = 1.0
"""How long a cancelled task may take to end (its cleanup) before it is left to itself."""

CLOSE_CONNECTIONS_S = 2.0
"""How long closing the producer (its flush of what the broker has not acknowledged) or a
connection pool may take, within what is left of the stop's budget."""


class StopBudget:
    """How long a process's stop may take, from the signal that asked for it.

    A stop finishes the batch in hand, commits, leaves the group, lets the relay publish what
    the last deliveries staged, and closes the producer and the pool; each waits on the
    broker or the database. Each step is bounded by its own timeout and by what is left of
    this budget, so the stop ends within it (and the supervisor's grace period) even when
    neither answers. A process that never began a stop (a test, a library caller) has each
    step bounded by its own timeout alone.

    The last resort is a thread, which runs even when the event loop does not: a task that
    does not end even when cancelled (its rollback waits on a database that does not answer)
    would keep the loop from closing. When the budget and its margins are spent, it logs why
    and ends the process with :data:`STOP_TIMEOUT_EXIT_CODE`, which leaves what a kill would,
    and nothing a kill would not: the log, the inbox and the outbox keep every guarantee.
    """

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._last_resort: threading.Timer | None = None

    def begin(self, timeout_s: float, name: str | None = None) -> None:
        """The stop starts now and may take ``timeout_s``; with ``name`` (a process's), the
        process is ended if it has not exited :data:`LAST_RESORT_S` past the budget."""
        self._deadline = time.monotonic() + timeout_s
        if name is not None and self._last_resort is None:
            self._last_resort = threading.Timer(
                timeout_s + BACKSTOP_MARGIN_S + LAST_RESORT_S, _exit_now, (name, timeout_s)
            )
            self._last_resort.daemon = True
            self._last_resort.start()

    def reset(self) -> None:
        """No stop under way (the process exited its loop, or a test is done)."""
        self._deadline = None
        if self._last_resort is not None:
            self._last_resort.cancel()
            self._last_resort = None

    def left(self, cap_s: float) -> float:
        """Seconds a step bounded by ``cap_s`` may take now (at least :data:`STEP_MIN_S`)."""
        if self._deadline is not None:
            cap_s = min(cap_s, self._deadline - time.monotonic())
        return max(cap_s, STEP_MIN_S)


def _exit_now(name: str, timeout_s: float) -> None:
    log.error(
        "%s did not exit within its stop timeout (%g s) and its margins; exiting now, leaving"
        " what it still waits on as a kill would (the inbox and the outbox keep every guarantee)",
        name, timeout_s,
    )  # fmt: skip
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(STOP_TIMEOUT_EXIT_CODE)


STOP = StopBudget()
"""This process's stop (a process stops once); begun by :func:`events.service.run_process`."""


async def end_within(tasks: Sequence[asyncio.Task[Any]], timeout_s: float, name: str) -> None:
    """Wait for ``tasks`` (already told to stop) to end for at most ``timeout_s`` and what is
    left of the stop's budget, then cancel the ones still waiting, saying which; a cancelled
    one that does not end in :data:`CANCELLED_END_S` is left to itself. Raises a task's own
    error, as awaiting it would."""
    if not tasks:
        return
    waited_s = STOP.left(timeout_s)
    _, pending = await asyncio.wait(tasks, timeout=waited_s)
    for task in sorted(pending, key=lambda t: t.get_name()):
        log.warning(
            "%s: %s did not end within %.1f s of the stop; cancelling it",
            name, task.get_name(), waited_s,
        )  # fmt: skip
        task.cancel()
    await end_cancelled(pending, name)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise cast(BaseException, task.exception())


async def end_cancelled(tasks: Collection[asyncio.Task[Any]], name: str) -> None:
    """Give cancelled ``tasks`` :data:`CANCELLED_END_S` (within the stop's budget) to end;
    leave the ones that do not (a cleanup waiting on a database that does not answer),
    saying which."""
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=STOP.left(CANCELLED_END_S))
    for task in sorted(stuck, key=lambda t: t.get_name()):
        log.warning("%s: %s did not end when cancelled; leaving it", name, task.get_name())


async def close_within(step: Awaitable[object], what: str, why_safe: str) -> None:
    """Await ``step`` (closing ``what``) for at most :data:`CLOSE_CONNECTIONS_S` and what is
    left of the stop's budget, then go on without it, saying so and why that is safe."""
    waited_s = STOP.left(CLOSE_CONNECTIONS_S)
    try:
        await asyncio.wait_for(step, waited_s)
    except TimeoutError:
        log.warning(
            "%s did not close within %.1f s; going on without (%s)", what, waited_s, why_safe
        )
