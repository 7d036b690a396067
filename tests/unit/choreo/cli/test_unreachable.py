"""A command that finds Kafka or PostgreSQL down says which address it tried and how the
local stack is started, in one line and exit code 1: no traceback, no aiokafka warnings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from events.database import unreachable
from events.settings import BOOTSTRAP_FILE, Settings

ROOT = Path(__file__).resolve().parents[4]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stack_down(tmp_path: Path) -> dict[str, str]:
    """The environment of a local stack that is recorded in ``tmp_path`` but not running:
    its broker's address in ``tmp_path``, its PostgreSQL's port in the environment."""
    (tmp_path / BOOTSTRAP_FILE).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / BOOTSTRAP_FILE).write_text(f"127.0.0.1:{closed_port()}\n")
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k and "KAFKA" not in k}
    env |= {"CHOREO_STATE_DIR": str(tmp_path), "CHOREO_POSTGRES_PORT": str(closed_port())}
    # A free API port: `choreo run` refuses a taken one first (a platform running beside).
    env |= {"CHOREO_API_PORT": str(closed_port())}
    return env | {"CHOREO_TRACING_ENABLED": "false", "COLUMNS": "200"}


def choreo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "choreo", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command", [("orders", "place", "--sample", "happy"), ("topics", "create")]
)
def test_a_broker_down_is_named_without_a_traceback(
    stack_down: dict[str, str], command: tuple[str, ...]
):
    result = choreo(stack_down, *command)
    assert result.returncode == 1, result.stderr
    kafka = (Path(stack_down["CHOREO_STATE_DIR"]) / BOOTSTRAP_FILE).read_text().strip()
    assert (
        f"error: cannot reach Kafka at {kafka}. Is it running? `choreo stack up`" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr  # the producer that failed to start was closed


@pytest.mark.parametrize("command", [("orders", "list"), ("run",)])
def test_a_database_down_is_named_without_a_traceback(
    stack_down: dict[str, str], command: tuple[str, ...]
):
    # `orders list` reports it itself; `run` left it to the entry point, which printed the
    # supervisor's traceback.
    result = choreo(stack_down, *command)
    assert result.returncode == 1, result.stderr
    port = stack_down["CHOREO_POSTGRES_PORT"]
    assert (
        f"error: cannot connect to PostgreSQL at 127.0.0.1:{port}: nothing is listening there."
        " Is it running? `choreo stack up` starts the local stack."
    ) in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_another_database_is_named_without_its_password_or_the_stacks_hint(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("CHOREO_DATABASE_URL", "postgresql://app:s3cret@db.internal:6432/orders")
    refused = unreachable(Settings(), ConnectionRefusedError(111, "Connect call failed"))
    assert str(refused) == (
        "cannot connect to PostgreSQL at db.internal:6432: nothing is listening there."
    )
    denied = unreachable(Settings(), asyncpg.InvalidPasswordError("password authentication failed"))
    assert str(denied) == (
        "cannot connect to PostgreSQL at db.internal:6432: password authentication failed."
    )
    assert "s3cret" not in f"{refused} {denied}"
