"""`pip install .` (no extras) gives a working `choreo run`; `pip install '.[bench]'` adds
`choreo bench`. Each test installs the wheel into a fresh virtualenv (uv, from its cache) and
runs it from outside the checkout, so nothing resolves from the source tree."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from events.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV = [uv] if (uv := shutil.which("uv")) else [sys.executable, "-m", "uv"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([*UV, "build", "--wheel", "--out-dir", str(out), str(ROOT)], cwd=ROOT)
    return next(out.glob("choreo-*.whl"))


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH or VIRTUAL_ENV of the test session: the installed wheel alone.
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(
        args, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def _install(tmp_path: Path, requirement: str) -> Path:
    """A fresh virtualenv with ``requirement`` installed; its bin folder."""
    venv = tmp_path / "venv"
    _run([*UV, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=tmp_path)
    _run([*UV, "pip", "install", "--quiet", requirement], cwd=tmp_path, VIRTUAL_ENV=str(venv))
    return venv / "bin"


def test_a_plain_install_runs_choreo_without_the_bench(
    wheel: Path, tmp_path: Path, settings: Settings
):
    bin_dir = _install(tmp_path, str(wheel))
    help_text = _run([str(bin_dir / "choreo"), "--help"], cwd=tmp_path).stdout
    assert "orders" in help_text
    assert "bench" not in help_text
    _run([str(bin_dir / "choreo"), "run", "--help"], cwd=tmp_path)
    missing = subprocess.run(
        [str(bin_dir / "python"), "-c", "import matplotlib"], cwd=tmp_path, capture_output=True
    )
    assert missing.returncode != 0

    # One process for real, on this test's topics: schemas and seed stock come from the wheel.
    log_path = tmp_path / "run.log"
    env = {
        **os.environ,
        "CHOREO_TOPIC_PREFIX": settings.topic_prefix,
        "CHOREO_STATE_DIR": str(tmp_path / "state"),
        "CHOREO_TRACING_ENABLED": "false",
    }
    env.pop("PYTHONPATH", None)
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(bin_dir / "choreo"), "run", "--only", "inventory"],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "inventory ready" not in log_path.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log = log_path.read_text()
    assert "inventory ready" in log, log
    assert f"{tmp_path / 'venv'}" in log  # seeded from the installed seed_stock.json
    assert "all processes stopped" in log


def test_the_bench_extra_adds_choreo_bench(wheel: Path, tmp_path: Path):
    bin_dir = _install(tmp_path, f"{wheel}[bench]")
    help_text = _run([str(bin_dir / "choreo"), "bench", "--help"], cwd=tmp_path).stdout
    assert "saga" in help_text
    assert "rebuild" in help_text
