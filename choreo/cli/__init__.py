"""`choreo`: run the local stack, provision topics, inspect schemas and events.

Every command reads its configuration from the environment (see the README's configuration
table) and prints readable text by default or JSON with ``--json``.

One module per command group (`stack`, `topics`, `schemas`, `events`, `orders`, `dlq`,
`projections`, `tokens`, `customers`) and per top-level command family (`metrics`,
`processes`, `replay`, `demo`, `breakers` with `faults`, `chaos`), over
:mod:`choreo.cli.common`. They are registered here, in the order `--help` lists them.
`choreo bench` lives with the benchmarks (:mod:`bench.cli`) and is mounted only when the
``choreo[bench]`` extra is installed.
"""

from __future__ import annotations

import importlib.util

import pydantic
import typer

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

app = typer.Typer(
    help="Choreo: event-sourced choreography on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack.app, name="stack")
app.add_typer(topics.app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(events.app, name="events")
app.add_typer(orders.app, name="orders")
app.add_typer(dlq.app, name="dlq")
app.add_typer(projections.app, name="projections")
app.add_typer(tokens.app, name="tokens")
app.add_typer(sagas.app, name="sagas")
app.add_typer(returns.app, name="returns")
app.add_typer(customers.app, name="customers")
app.add_typer(breakers.faults_app, name="faults")
app.command("metrics")(metrics.metrics_cmd)
app.command("breakers")(breakers.breakers_cmd)
app.command("service")(processes.service)
app.command("replay")(replay.replay_cmd)
app.command("run")(processes.run)
app.command("stop")(processes.stop)
app.command("demo")(demo.demo)
app.command("chaos")(chaos.chaos)


def bench_installed() -> bool:
    """Whether the ``choreo[bench]`` extra is installed (found, not imported: start-up)."""
    return all(importlib.util.find_spec(name) is not None for name in BENCH_EXTRA)


if bench_installed():
    # The only import of bench from choreo, and an optional one: bench sits above choreo.
    from bench.cli import app as bench_app

    app.add_typer(bench_app, name="bench")


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
