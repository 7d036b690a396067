"""Finding a deployment's processes in /proc by command line and topic prefix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from choreo.chaos import processes
from choreo.chaos.processes import (
    ProcessNotFound,
    pick,
    platform_processes,
    service_name,
    wait_replaced,
)


def fake_process(proc: Path, pid: int, argv: list[str], env: dict[str, str], state: str = "S"):
    home = proc / str(pid)
    home.mkdir()
    (home / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (home / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in env.items()))
    (home / "stat").write_text(f"{pid} (python) {state} 1 2 3")


def test_the_name_comes_from_the_service_command_line():
    assert service_name(["/usr/bin/python", "-m", "choreo", "service", "payment"]) == "payment"
    assert service_name(["/usr/bin/python", "-m", "choreo", "run"]) is None


async def test_processes_are_found_by_name_topic_prefix_and_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(processes, "PROC", proc)
    mine = {"CHOREO_TOPIC_PREFIX": "e2e1.", "CHOREO_STATE_DIR": "/srv/a/.state"}
    service = ["python", "-m", "choreo", "service"]
    fake_process(proc, 40, [*service, "payment"], mine)
    fake_process(proc, 30, [*service, "payment"], mine)
    fake_process(proc, 50, [*service, "payment"], {**mine, "CHOREO_TOPIC_PREFIX": "other."})
    fake_process(proc, 51, [*service, "payment"], {**mine, "CHOREO_STATE_DIR": "/srv/b/.state"})
    fake_process(proc, 70, [*service, "crm"], mine, state="Z")
    fake_process(proc, 80, ["python", "-m", "choreo", "run"], mine)
    # No CHOREO_* at all: the default prefix, and the .state of the checkout of its venv.
    fake_process(proc, 60, ["/srv/a/.venv/bin/python", *service[1:], "email"], {"HOME": "/"})
    fake_process(proc, 61, ["/usr/bin/python3", *service[1:], "email"], {"HOME": "/"})
    # A relative CHOREO_STATE_DIR: the folder under the process's own working directory.
    fake_process(proc, 90, [*service, "shipping"], {**mine, "CHOREO_STATE_DIR": ".state"})
    (proc / "90" / "cwd").symlink_to(tmp_path / "srv-a", target_is_directory=True)
    (tmp_path / "srv-a").mkdir()
    (proc / "self").mkdir()
    found = platform_processes("e2e1.", tmp_path / "srv-a" / ".state")
    assert found == {"shipping": [90]}
    assert platform_processes("e2e1.", Path("/srv/a/.state")) == {"payment": [30, 40]}
    assert platform_processes("choreo.", Path("/srv/a/.state")) == {"email": [60]}
    assert platform_processes("choreo.", Path("/srv/b/.state")) == {}
    assert await pick("e2e1.", Path("/srv/a/.state"), "payment") == 30
    with pytest.raises(ProcessNotFound, match="no running crm"):
        await pick("e2e1.", Path("/srv/a/.state"), "crm", timeout_s=0.3)


MINE = {"CHOREO_TOPIC_PREFIX": "e2e1.", "CHOREO_STATE_DIR": "/srv/a/.state"}
"""The environment of the deployment the waiting tests look for."""


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty /proc of fake processes, which the module reads instead of the real one."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").mkdir()
    monkeypatch.setattr(processes, "PROC", proc)
    return proc


async def test_a_process_being_restarted_is_waited_for(proc: Path):

    async def restarted_later() -> None:
        await asyncio.sleep(0.5)
        fake_process(proc, 90, ["python", "-m", "choreo", "service", "email"], MINE)

    restart = asyncio.create_task(restarted_later())
    assert await pick("e2e1.", Path("/srv/a/.state"), "email", timeout_s=10) == 90
    await restart


async def test_a_replica_that_ran_all_along_is_no_replacement(proc: Path):
    service = ["python", "-m", "choreo", "service", "payment"]
    fake_process(proc, 40, service, MINE)  # payment#2; payment (30) was just killed
    state = Path("/srv/a/.state")
    with pytest.raises(ProcessNotFound, match="not restarted"):
        await wait_replaced("e2e1.", state, "payment", before=[30, 40], timeout_s=0.3)
    fake_process(proc, 50, service, MINE)
    assert await wait_replaced("e2e1.", state, "payment", before=[30, 40], timeout_s=5) < 5
