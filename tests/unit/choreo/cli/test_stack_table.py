"""`choreo stack status` at 80 columns: paths under the working directory relative to it, a
log's path on one line, every path and address whole (wrapped, never cut with an ellipsis)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

from choreo.cli.stack import _status_table


def _statuses(root: Path) -> list[dict[str, object]]:
    return [
        {"name": "postgres", "running": True, "external": False,
         "address": "127.0.0.1:15432/choreo", "pid": 20331,
         "log": f"{root}/.state/postgres/postgres.log",
         "detail": f"data in {root}/.state/postgres/data"},
        {"name": "jaeger", "running": False, "external": False,
         "address": "http://127.0.0.1:4317", "pid": None,
         "log": "/var/log/elsewhere/jaeger.log", "detail": "UI http://127.0.0.1:16686"},
    ]  # fmt: skip


def _render(statuses: list[dict[str, object]]) -> str:
    console = Console(width=80, record=True, color_system=None)
    console.print(_status_table(statuses))
    return console.export_text()


def _cells(text: str, column: int) -> str:
    """A column's text, its wrapped lines joined, without spaces."""
    lines = [line.split("│")[column] for line in text.splitlines() if "│" in line]
    return "".join(lines).replace(" ", "")


def test_paths_under_the_working_directory_are_relative_and_nothing_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    text = _render(_statuses(tmp_path))
    assert "…" not in text
    log = _cells(text, 4)
    assert str(tmp_path) not in log  # joined: a path is longer than the column, and wraps
    assert ".state/postgres/postgres.log" in log
    assert "datain.state/postgres/data" in log
    assert "/var/log/elsewhere/jaeger.log" in log  # elsewhere: absolute, whole
    assert "UIhttp://127.0.0.1:16686" in log
    # A log's path on one line, what one copies; the pid under the state.
    assert re.search(r"│ *\.state/postgres/postgres\.log *│", text), text
    assert "pid 20331" in text


def test_at_the_filesystems_root_paths_stay_absolute(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir("/")
    log = _cells(_render(_statuses(Path("/srv/choreo"))), 4)
    assert "/srv/choreo/.state/postgres/postgres.log" in log
    assert "/var/log/elsewhere/jaeger.log" in log
