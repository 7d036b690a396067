"""`choreo run --replicas`: what it refuses before starting anything."""

from __future__ import annotations

import socket

import pytest
import typer
from typer.testing import CliRunner

from choreo.cli import app
from choreo.cli.processes import _refuse_a_taken_api_port
from events.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--replicas", "api=2"], {}, "api listens on one port"),
        (["--replicas", "payment"], {}, "'payment' is not NAME=N"),
        ([], {"CHOREO_REPLICAS": "billing=2"}, "unknown process 'billing'"),
    ],
)
def test_bad_replicas_fail_before_any_process_starts(
    args: list[str], env: dict[str, str], error: str
):
    result = runner.invoke(app, ["run", *args], env={"COLUMNS": "200", **env})
    assert result.exit_code == 1, result.output
    assert error in result.output


@pytest.mark.parametrize("detach", [[], ["--detach"]])
def test_a_taken_api_port_fails_at_once(tmp_path, detach: list[str]):
    # The API restarted every 30 s without binding, and `--detach` waited two minutes.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"COLUMNS": "200", "CHOREO_API_PORT": str(port), "CHOREO_STATE_DIR": str(tmp_path)}
        result = runner.invoke(app, ["run", *detach], env=env)
    assert result.exit_code == 1, result.output
    assert f"port {port} of the API is taken" in result.output
    assert not (tmp_path / "run.pid").exists()  # nothing started


def test_a_taken_api_port_is_no_ones_business_without_the_api(monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("CHOREO_API_PORT", str(taken.getsockname()[1]))
        _refuse_a_taken_api_port(["payment", "projector"])  # returns: nothing to refuse
        with pytest.raises(typer.Exit):
            _refuse_a_taken_api_port(["payment", "api"])


def test_a_pid_file_of_a_run_that_is_gone_is_not_a_run(tmp_path):
    """A corrupt pid file, or one naming a process that is not `choreo run` (a pid reused
    since the run died): `stop` says "not running" and removes it, without a traceback."""
    import subprocess
    import sys

    env = {"COLUMNS": "200", "CHOREO_STATE_DIR": str(tmp_path)}
    pid_file = tmp_path / "run.pid"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    run_like = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "choreo", "run"]
    )
    try:
        for held in ("abc", str(other.pid)):
            pid_file.write_text(held)
            result = runner.invoke(app, ["stop"], env=env)
            assert (result.exit_code, result.output.strip()) == (0, "not running"), held
            assert not pid_file.exists()
        assert other.poll() is None  # not signalled
        pid_file.write_text(str(run_like.pid))
        result = runner.invoke(app, ["stop", "--timeout", "5"], env=env)
        assert (result.exit_code, result.output.strip()) == (0, "stopped")
        assert run_like.wait(5) == -15  # SIGTERM, as a run gets it
    finally:
        for process in (other, run_like):
            process.kill()
            process.wait()
