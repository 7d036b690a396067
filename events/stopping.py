"""What a stopping process is still waiting on, logged while it waits.

A graceful stop finishes the batch in hand, commits, leaves the consumer group and closes the
producer and the pool; each of those waits on the broker or the database. A supervisor kills a
process that does not exit within its grace period, and then nothing says which of them hung.
:func:`report_slow_stop` logs every pending task's await chain at an interval until the stop
ends, so the log of a stop that hangs says where.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import FrameType
from typing import Any

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
