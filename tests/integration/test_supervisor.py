"""`choreo run`'s supervisor: a crashing process is restarted, and all stop on request."""

from __future__ import annotations

import asyncio

import pytest

from choreo.supervisor import Supervisor

pytestmark = pytest.mark.integration


async def test_a_crashing_process_is_restarted_with_backoff(monkeypatch: pytest.MonkeyPatch):
    # A database nobody listens on: the service exits at start-up, every time.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:x@127.0.0.1:9/none")
    # Without roles: provisioning them would fail the supervisor itself before any child.
    monkeypatch.setenv("CHOREO_DATABASE_ROLES", "false")
    lines: list[tuple[str, str]] = []
    supervisor = Supervisor(
        ["crm"], echo=lambda name, _color, line: lines.append((name, line)), grace_s=5
    )
    task = asyncio.create_task(supervisor.run())
    try:
        for _ in range(150):
            if any("restart #2" in line for _, line in lines):
                break
            await asyncio.sleep(0.1)
    finally:
        supervisor.stopping.set()
        await asyncio.wait_for(task, 30)
    restarts = [line for name, line in lines if name == "crm" and "restart #" in line]
    assert len(restarts) >= 2, lines
    assert "exited with code 1" in restarts[0]
    assert any("cannot connect to PostgreSQL" in line for _, line in lines)
    assert lines[-1] == ("choreo", "all processes stopped")


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
    task = asyncio.create_task(supervisor.run())
    try:
        for _ in range(600):  # each start imports the runtime: slow on a busy machine
            if {name for name, line in lines if "restart #1" in line} == {"crm", "crm#2"}:
                break
            await asyncio.sleep(0.1)
    finally:
        supervisor.stopping.set()
        await asyncio.wait_for(task, 30)
    started = {name for name, line in lines if line.startswith("started (pid")}
    assert started == {"crm", "crm#2"}, lines
    # Each instance is a process of its own, restarted on its own.
    assert {name for name, line in lines if "restart #1" in line} == {"crm", "crm#2"}, lines
