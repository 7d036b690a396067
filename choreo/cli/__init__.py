"""`choreo`: run the local stack, provision topics, inspect schemas and events.

Every command reads its configuration from the environment (see the README's configuration
table) and prints readable text by default or JSON with ``--json``.

One module per command group (`stack`, `topics`, `schemas`, `events`, `orders`, `dlq`,
`projections`, `tokens`, `customers`) and per top-level command family (`metrics`,
`processes`, `replay`, `demo`, `breakers` with `faults`, `chaos`), over
:mod:`choreo.cli.common`. They are registered here, each in its panel of `choreo --help`
(:data:`OVERVIEW` orders the list).
`choreo bench` lives with the benchmarks (:mod:`bench.cli`) and is mounted only when the
``choreo[bench]`` extra is installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
from typing import Any

import pydantic
import typer
from typer.core import TyperGroup

from choreo.cli import (
    breakers,
    chaos,
    customers,
    demo,
    dlq,
    events,
    metrics,
    orders,
    processes,
    projections,
    replay,
    returns,
    sagas,
    schemas,
    stack,
    tokens,
    topics,
)
from events.settings import describe_invalid_settings

# The distributions of pyproject's `bench` extra (import names alike).
BENCH_EXTRA = ("dbos", "matplotlib", "psutil", "temporalio")

# `choreo --help` lists the commands in panels, in the order a newcomer meets them. Commands
# whose description is a paragraph get a one-line summary there (their own --help has it all).
RUN, SAGAS, OPERATE, DEVELOP = "Run", "Sagas and orders", "Operate", "Develop and test"
OVERVIEW = (
    "run", "stop", "demo", "service", "stack",
    "orders", "returns", "sagas", "customers",
    "dlq", "projections", "replay", "metrics", "breakers", "faults", "tokens", "topics",
    "chaos", "schemas", "events", "bench",
)  # fmt: skip


class _Overview(TyperGroup):
    """The top-level group, listing its commands in :data:`OVERVIEW`'s order (Typer lists
    commands before groups, which put the panel of orders last)."""

    def list_commands(self, ctx: Any) -> list[str]:  # Typer's own (vendored) click.Context
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: OVERVIEW.index(n) if n in OVERVIEW else len(OVERVIEW))


app = typer.Typer(
    cls=_Overview,
    help="Choreo: event-sourced choreography on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"choreo {importlib.metadata.version('choreo')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version."
    ),
) -> None:
    """Choreo: event-sourced choreography on Apache Kafka."""


app.add_typer(stack.app, name="stack", rich_help_panel=RUN)
app.command("run", short_help="Run every Choreo process, supervised, with one log stream.",
            rich_help_panel=RUN)(processes.run)  # fmt: skip
app.command("stop", rich_help_panel=RUN)(processes.stop)
app.command("demo", short_help="Start a sample saga per path of every saga; show how each ends.",
            rich_help_panel=RUN)(demo.demo)  # fmt: skip
app.command("service", rich_help_panel=RUN)(processes.service)
app.add_typer(orders.app, name="orders", rich_help_panel=SAGAS)
app.add_typer(returns.app, name="returns", rich_help_panel=SAGAS)
app.add_typer(sagas.app, name="sagas", rich_help_panel=SAGAS)
app.add_typer(customers.app, name="customers", rich_help_panel=SAGAS)
app.add_typer(dlq.app, name="dlq", rich_help_panel=OPERATE)
app.add_typer(projections.app, name="projections", rich_help_panel=OPERATE)
app.command("replay", short_help="Rebuild a stopped process's own tables from the log.",
            rich_help_panel=OPERATE)(replay.replay_cmd)  # fmt: skip
app.command("metrics", short_help="Choreo's metrics as Jaeger serves them.",
            rich_help_panel=OPERATE)(metrics.metrics_cmd)  # fmt: skip
app.command("breakers", short_help="Every running process's circuit breakers.",
            rich_help_panel=OPERATE)(breakers.breakers_cmd)  # fmt: skip
app.add_typer(breakers.faults_app, name="faults", rich_help_panel=OPERATE)
app.add_typer(tokens.app, name="tokens", rich_help_panel=OPERATE)
app.add_typer(topics.app, name="topics", rich_help_panel=OPERATE)
app.add_typer(schemas.app, name="schemas", rich_help_panel=DEVELOP)
app.add_typer(events.app, name="events", rich_help_panel=DEVELOP)
app.command("chaos", short_help="Place orders while injecting faults; check the invariants.",
            rich_help_panel=DEVELOP)(chaos.chaos)  # fmt: skip


def bench_installed() -> bool:
    """Whether the ``choreo[bench]`` extra is installed (found, not imported: start-up)."""
    return all(importlib.util.find_spec(name) is not None for name in BENCH_EXTRA)


if bench_installed():
    # The only import of bench from choreo, and an optional one: bench sits above choreo.
    from bench.cli import app as bench_app

    app.add_typer(bench_app, name="bench", rich_help_panel=DEVELOP)


def summarise_commands(group: typer.Typer) -> None:
    """Give every command of ``group`` and its sub-groups without a ``short_help`` its
    description's first paragraph on one line: Typer's rich help keeps a docstring's line
    breaks in a group's list of commands, which left ragged lines mid-sentence."""
    for command in group.registered_commands:
        text = command.help or inspect.getdoc(command.callback) or ""
        if command.short_help is None and text:
            command.short_help = " ".join(text.split("\n\n")[0].split())
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            summarise_commands(sub.typer_instance)


summarise_commands(app)


def main() -> None:
    """Entry point of the `choreo` command."""
    try:
        app()
    except pydantic.ValidationError as exc:
        # An invalid CHOREO_* variable: name it and exit 2 (a usage error), no traceback.
        described = describe_invalid_settings(exc)
        if described is None:
            raise
        typer.echo(described, err=True)
        raise SystemExit(2) from None
