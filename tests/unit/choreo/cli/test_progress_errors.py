"""A command with a progress bar that fails says why and leaves no bar behind it (`replaying
crm ━━━ 0/?` stayed under `error: crm is running`)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from choreo import replay
from choreo.cli import app
from events.errors import ChoreoError
from projections import rebuild

runner = CliRunner()


async def _refuse(*args: object, **kwargs: object) -> None:
    raise ChoreoError("crm is running (1 member(s) in its consumer group); stop it first")


@pytest.mark.parametrize(
    ("module", "name", "args", "bar"),
    [
        (replay, "replay", ["replay", "crm"], "replaying crm"),
        (rebuild, "rebuild", ["projections", "rebuild"], "replaying the log"),
    ],
)
def test_the_error_alone_is_left(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, args: list[str], bar: str
):
    monkeypatch.setattr(module, name, _refuse)
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "error: crm is running" in result.output
    assert bar not in result.output


async def _interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_an_interrupted_rebuild_says_the_read_models_are_whole(monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C (asyncio.run raises KeyboardInterrupt once the rebuild has stopped): exit 130
    with what became of the read models, no traceback and no bar left behind."""
    monkeypatch.setattr(rebuild, "rebuild", _interrupted)
    result = runner.invoke(app, ["projections", "rebuild"], env={"COLUMNS": "200"})
    assert result.exit_code == 130
    assert "interrupted: the read models are whole" in result.output
    assert "replaying the log" not in result.output
