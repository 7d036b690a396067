"""`choreo --help` is an overview: every command listed once, in its panel, in the order a
newcomer meets them, each on a summary that reads as one sentence (Typer's rich help kept a
docstring's line breaks in the list, cutting lines mid-sentence); and every command's own
help reads as prose at 80 columns."""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from choreo.cli import OVERVIEW, app

runner = CliRunner()


def _overview(columns: int = 100) -> str:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def _listed(output: str) -> list[str]:
    """The command names in the order the panels list them."""
    return re.findall(r"^│ ([a-z][a-z-]*)\s{2,}", output, flags=re.MULTILINE)


def test_every_command_is_listed_once_in_the_overviews_order():
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    listed = _listed(_overview())
    assert sorted(listed) == sorted(group.commands)
    assert set(group.commands) <= set(OVERVIEW), "a new command needs its place in OVERVIEW"
    assert listed == [name for name in OVERVIEW if name in group.commands]


def test_the_panels_come_in_the_order_a_newcomer_meets_them():
    output = _overview()
    panels = re.findall(r"^╭─ ([A-Za-z ]+?) ─", output, flags=re.MULTILINE)
    assert panels == ["Options", "Run", "Sagas and orders", "Operate", "Develop and test"]
    # `run` opens the first panel of commands, the orders open the second.
    assert output.index("│ run ") < output.index("│ orders ") < output.index("│ dlq ")


def _summaries(output: str) -> dict[str, list[str]]:
    """Each listed command's summary: its line and the indented lines that continue it."""
    found = re.findall(r"^│ ([a-z][a-z-]*)\s{2,}(.*?)\s*│\n((?:│ {3,}\S.*\n)*)", output, re.M)
    return {
        name: [first, *(line.strip("│ ") for line in rest.splitlines())]
        for name, first, rest in found
    }


def test_no_summary_keeps_a_docstrings_line_break():
    # 200 columns hold every summary on one line, unless a line break was kept in it.
    summaries = _summaries(_overview(columns=200))
    assert set(summaries) == set(_listed(_overview()))
    for name, lines in summaries.items():
        assert len(lines) == 1, (name, lines)


def test_a_sub_groups_commands_read_as_one_sentence_too():
    result = runner.invoke(app, ["orders", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    summaries = _summaries(result.output)
    # `orders trace`'s docstring breaks its first paragraph after "the span tree".
    assert summaries["trace"] == [
        "The order's trace from Jaeger: its id, a link to Jaeger's UI and the span tree"
        " (service, operation, duration)."
    ]
    assert all(len(lines) == 1 for lines in summaries.values()), summaries


def test_version_prints_the_installed_distributions_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"choreo {importlib.metadata.version('choreo')}\n"
    # It runs before any command: with one after it, only the version is printed.
    result = runner.invoke(app, ["--version", "stack", "status"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("choreo ")
    assert "kafka" not in result.output.lower()


def _every_command(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(group, typer.core.TyperGroup):
        for name, command in group.commands.items():
            yield from _every_command(command, (*path, name))


def _description(output: str) -> list[list[str]]:
    """The paragraphs of a --help's description (between the usage line and the first
    panel), each as its lines without the one-space margin."""
    text = output.split("╭", 1)[0].split("\n")
    start = next(i for i, line in enumerate(text) if line.strip().startswith("Usage:")) + 1
    paragraphs: list[list[str]] = [[]]
    for line in text[start:]:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def test_every_commands_description_fills_its_lines_at_80_columns():
    # Typer's default markup kept each line break of a docstring: at 80 columns a 95-column
    # source line became a full line and a fragment ("order.placed), or from").
    commands = list(_every_command(typer.main.get_command(app)))
    assert len(commands) > 50
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        for paragraph in _description(result.output):
            for line, following in itertools.pairwise(paragraph):
                # Greedy filling: the next line's first word did not fit on this one.
                assert len(line) + 1 + len(following.split()[0]) > 80 - 2, (path, line)


def test_the_cli_starts_without_kafkas_client_the_runtime_or_the_peers_sdks():
    # `choreo --help` imports every command module: what only some commands use is imported
    # in them (aiokafka and the runtime cost `--help` ~0.1 s, the bench's peers ~0.3 s).
    code = "import sys, choreo.cli; print(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "choreo.cli.events" in loaded  # every command module is there
    heavy = ("aiokafka", "sqlalchemy", "dbos", "temporalio", "httpx", "events.service")
    assert [name for name in heavy if name in loaded] == []
