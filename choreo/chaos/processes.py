"""The platform's processes as the operating system sees them, found without a pid file.

Every Choreo process runs as ``python -m choreo service NAME`` (under `choreo run`'s supervisor,
or the e2e tests' platform), and the deployment it belongs to is its topic prefix
(``CHOREO_TOPIC_PREFIX``, ``choreo.`` when unset) and its state folder (``CHOREO_STATE_DIR``,
else ``.state`` of the checkout whose virtualenv runs it): two checkouts on one machine may
both run the default prefix. So the processes of a deployment are found in ``/proc``: the
command line names the process, the environment the deployment. Processes of other users
(unreadable environments) are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path

from events.errors import ChoreoError

PROC = Path("/proc")
DEFAULT_PREFIX = "choreo."


class ProcessNotFound(ChoreoError):
    """No running process of that kind belongs to the deployment."""


def _command(pid_dir: Path) -> list[str] | None:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _deployment(pid_dir: Path, command: list[str]) -> tuple[str, Path | None] | None:
    """The process's topic prefix and state folder, or None when its environment cannot be
    read; the folder is None when neither its environment nor its interpreter tells it."""
    try:
        raw = (pid_dir / "environ").read_bytes()
    except OSError:
        return None
    env = dict(
        entry.decode(errors="replace").split("=", 1) for entry in raw.split(b"\0") if b"=" in entry
    )
    state = env.get("CHOREO_STATE_DIR")
    if state is not None:
        # A relative folder is the process's own working directory's (as its Settings read it).
        state_dir: Path | None = _cwd(pid_dir) / state
    else:  # Settings' default: the checkout's .state; the checkout holds the interpreter's venv
        venv = Path(command[0]).parent.parent if command else None
        state_dir = venv.parent / ".state" if venv is not None and venv.name == ".venv" else None
    return env.get("CHOREO_TOPIC_PREFIX", DEFAULT_PREFIX), state_dir


def _cwd(pid_dir: Path) -> Path:
    """The process's working directory (this one's when unreadable: an absolute folder is
    read the same either way)."""
    try:
        return (pid_dir / "cwd").resolve(strict=True)
    except OSError:
        return Path.cwd()


def service_name(command: list[str]) -> str | None:
    """NAME of a ``... -m choreo service NAME`` command line, else None."""
    for i in range(len(command) - 3):
        if command[i : i + 3] == ["-m", "choreo", "service"]:
            return command[i + 3]
    return None


def platform_processes(prefix: str, state_dir: Path) -> dict[str, list[int]]:
    """Pids of the deployment's processes (topic prefix ``prefix``, state folder
    ``state_dir``) by process name, oldest first (the lower pid: pids are not reused within a
    run on a box this size)."""
    found: dict[str, list[int]] = defaultdict(list)
    wanted = (prefix, state_dir.resolve())
    for pid_dir in PROC.iterdir():
        if not pid_dir.name.isdigit():
            continue
        command = _command(pid_dir)
        name = service_name(command) if command else None
        if name is None or _zombie(pid_dir):
            continue
        deployment = _deployment(pid_dir, command or [])
        if deployment is None or deployment[1] is None:
            continue
        if (deployment[0], deployment[1].resolve()) != wanted:
            continue
        found[name].append(int(pid_dir.name))
    return {name: sorted(pids) for name, pids in found.items()}


def _zombie(pid_dir: Path) -> bool:
    try:
        return (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


async def pick(prefix: str, state_dir: Path, name: str, timeout_s: float = 90.0) -> int:
    """The pid of one running instance of process ``name`` (the first one), waiting up to
    ``timeout_s`` for one: the supervisor may be restarting it (after PostgreSQL restarted,
    say).

    Raises:
        ProcessNotFound: none runs within ``timeout_s``.
    """
    started = time.monotonic()
    while True:
        pids = platform_processes(prefix, state_dir).get(name)
        if pids:
            return pids[0]
        if time.monotonic() - started >= timeout_s:
            raise ProcessNotFound(
                f"no running {name} process with topic prefix {prefix!r} (waited {timeout_s:.0f}s)"
            )
        await asyncio.sleep(0.2)


def send(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid`` (a process that exited meanwhile is not an error)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def wait_replaced(
    prefix: str, state_dir: Path, name: str, before: Collection[int], timeout_s: float = 90.0
) -> float:
    """Wait until an instance of ``name`` that was not among ``before`` (the instances when
    one was killed) runs: the supervisor restarted it (a replica that ran all along does not
    count); returns the seconds it took.

    Raises:
        ProcessNotFound: none within ``timeout_s`` (no supervisor restarts this platform?).
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if any(pid not in before for pid in platform_processes(prefix, state_dir).get(name, [])):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise ProcessNotFound(
        f"{name} was not restarted within {timeout_s:.0f}s: is the platform run by"
        " `choreo run` (whose supervisor restarts processes)?"
    )
