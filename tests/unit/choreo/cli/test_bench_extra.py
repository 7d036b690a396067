"""`choreo bench` is an optional extra: without matplotlib and psutil the CLI and every runtime
module still import, and `choreo` simply has no `bench` command."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import typer

from choreo.cli import BENCH_EXTRA, app

ROOT = Path(__file__).resolve().parents[4]

# Run in a fresh interpreter: the extra's modules are made unimportable before anything loads.
BLOCK = "import sys\nfor name in ('matplotlib', 'psutil'):\n    sys.modules[name] = None\n"

IMPORT_EVERYTHING = """
import importlib, pkgutil
import choreo, events, projections, saga_coordinator, services
for package in (events, services, saga_coordinator, projections, choreo):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith(".__main__"):  # __main__ runs its process
            importlib.import_module(info.name)
            print(info.name)
"""


def _python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_without_the_extra_choreo_help_works_and_lists_no_bench():
    result = _python(BLOCK + "sys.argv = ['choreo', '--help']\nfrom choreo.cli import main\nmain()")
    assert result.returncode == 0, result.stderr
    assert "orders" in result.stdout
    assert not re.search(r"\bbench\b", result.stdout)


def test_without_the_extra_every_runtime_module_imports():
    result = _python(BLOCK + IMPORT_EVERYTHING)
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    cli_modules = {f"choreo.cli.{p.stem}" for p in (ROOT / "choreo" / "cli").glob("[!_]*.py")}
    assert cli_modules <= imported
    for package in ("events", "services", "saga_coordinator", "projections", "choreo"):
        assert any(name.startswith(package + ".") for name in imported), package


def test_with_the_extra_choreo_lists_bench():
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert "bench" in group.commands
    assert set(group.commands["bench"].commands) == {"saga", "rebuild", "peers", "console"}  # type: ignore[attr-defined]


def test_the_extra_checked_is_the_extra_declared():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = pyproject["project"]["optional-dependencies"]["bench"]
    assert sorted(re.split(r"[<>=!~ \[;]", d)[0] for d in declared) == sorted(BENCH_EXTRA)
