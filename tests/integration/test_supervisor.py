"""`choreo run`'s supervisor: a crashing process is restarted, and all stop on request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from choreo.supervisor import STOP_REPORT, Supervisor

pytestmark = pytest.mark.integration


async def run_until(
    supervisor: Supervisor, seen: Callable[[], bool], *, tries: int, stop_s: float = 30
) -> None:
    """Run ``supervisor`` until ``seen()`` holds (asked every 0.1 s, ``tries`` times at most),
    then stop it."""
    task = asyncio.create_task(supervisor.run())
    try:
        for _ in range(tries):
            if seen():
                break
            await asyncio.sleep(0.1)
    finally:
        supervisor.stopping.set()
        await asyncio.wait_for(task, stop_s)


async def test_a_crashing_process_is_restarted_with_backoff(monkeypatch: pytest.MonkeyPatch):
    # A database nobody listens on: the service exits at start-up, every time.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:x@127.0.0.1:9/none")
    # Without roles: provisioning them would fail the supervisor itself before any child.
    monkeypatch.setenv("CHOREO_DATABASE_ROLES", "false")
    lines: list[tuple[str, str]] = []
    supervisor = Supervisor(
        ["crm"], echo=lambda name, _color, line: lines.append((name, line)), grace_s=5
    )
    await run_until(supervisor, lambda: any("restart #2" in line for _, line in lines), tries=150)
    restarts = [line for name, line in lines if name == "crm" and "restart #" in line]
    assert len(restarts) >= 2, lines
    assert "exited with code 1" in restarts[0]
    assert any("cannot connect to PostgreSQL" in line for _, line in lines)
    name, last = lines[-1]
    assert (name, last.startswith("all processes stopped in ")) == ("choreo", True), lines[-1]


async def test_replicas_run_as_instances_of_their_own(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:x@127.0.0.1:9/none")
    # Without roles: provisioning them would fail the supervisor itself before any child.
    monkeypatch.setenv("CHOREO_DATABASE_ROLES", "false")
    lines: list[tuple[str, str]] = []
    supervisor = Supervisor(
        ["crm"],
        echo=lambda name, _color, line: lines.append((name, line)),
        grace_s=5,
        replicas={"crm": 2},
    )
    # Each start imports the runtime: slow on a busy machine.
    restarted = {"crm", "crm#2"}
    await run_until(
        supervisor,
        lambda: {name for name, line in lines if "restart #1" in line} == restarted,
        tries=600,
    )
    started = {name for name, line in lines if line.startswith("started (pid")}
    assert started == {"crm", "crm#2"}, lines
    # Each instance is a process of its own, restarted on its own.
    assert {name for name, line in lines if "restart #1" in line} == {"crm", "crm#2"}, lines


async def test_a_stop_says_how_each_process_ended(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A process that runs (on the session's stack, on topics of its own) stops cleanly, and
    # the supervisor says so in its last line and in the report `choreo stop` reads.
    monkeypatch.setenv("CHOREO_TOPIC_PREFIX", f"sup{uuid.uuid4().hex[:8]}.")
    monkeypatch.setenv("CHOREO_DATABASE_ROLES", "false")
    monkeypatch.setenv("CHOREO_STATE_DIR", str(tmp_path))
    lines: list[tuple[str, str]] = []
    supervisor = Supervisor(["crm"], echo=lambda name, _c, line: lines.append((name, line)))
    await run_until(
        supervisor, lambda: any("crm ready" in line for _, line in lines), tries=600, stop_s=60
    )
    assert any("crm ready" in line for _, line in lines), lines
    [crm] = supervisor.stopped
    assert (crm.name, crm.exit_code, crm.killed, crm.how) == ("crm", 0, False, "clean")
    assert 0 < crm.seconds < 20
    assert lines[-1] == ("choreo", f"all processes stopped in {crm.seconds:.1f} s, all 1 clean")
    report = orjson.loads((tmp_path / STOP_REPORT).read_bytes())
    assert report == [{"name": "crm", "exit_code": 0, "seconds": crm.seconds, "killed": False}]
