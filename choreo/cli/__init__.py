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
import sys
from collections.abc import Callable
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
    sagas_activity,  # noqa: F401 - its command joins `choreo sagas`
    sagas_waiting,  # noqa: F401 - its commands join `choreo sagas`
    schemas,
    stack,
    tokens,
    topics,
)
from choreo.cli.common import MARKDOWN, print_error
from events.errors import START_THE_LOCAL_STACK, ChoreoError, StackError
from events.settings import describe_invalid_settings, get_settings, local_kafka

# The distributions of pyproject's `bench` extra (import names alike).
BENCH_EXTRA = ("dbos", "matplotlib", "psutil", "temporalio")

# `choreo --help` lists the commands in panels, in the order a newcomer meets them: the order
# of registration (:func:`_register`). Commands whose description is a paragraph get a
# one-line summary there (their own --help has it all).
RUN, SAGAS, OPERATE, DEVELOP = "Run", "Sagas and orders", "Operate", "Develop and test"
OVERVIEW: list[str] = []
"""The top-level commands as `choreo --help` lists them."""


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
    rich_markup_mode=MARKDOWN,
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


def _register(
    panel: str, name: str, target: typer.Typer | Callable[..., Any], summary: str | None = None
) -> None:
    """Add a command (a function) or a group of them (a Typer) to ``panel``, next in order."""
    if isinstance(target, typer.Typer):
        app.add_typer(target, name=name, rich_help_panel=panel)
    else:
        app.command(name, short_help=summary, rich_help_panel=panel)(target)
    OVERVIEW.append(name)


_register(RUN, "run", processes.run, "Run every Choreo process, supervised, with one log stream.")
_register(RUN, "stop", processes.stop)
_register(RUN, "demo", demo.demo, "Start a sample saga per path of every saga; show how each ends.")
_register(RUN, "service", processes.service)
_register(RUN, "stack", stack.app)
_register(SAGAS, "orders", orders.app)
_register(SAGAS, "returns", returns.app)
_register(SAGAS, "sagas", sagas.app)
_register(SAGAS, "customers", customers.app)
_register(OPERATE, "dlq", dlq.app)
_register(OPERATE, "projections", projections.app)
_register(
    OPERATE, "replay", replay.replay_cmd, "Rebuild a stopped process's own tables from the log."
)
_register(OPERATE, "metrics", metrics.metrics_cmd, "Choreo's metrics as Jaeger serves them.")
_register(OPERATE, "breakers", breakers.breakers_cmd, "Every running process's circuit breakers.")
_register(OPERATE, "faults", breakers.faults_app)
_register(OPERATE, "tokens", tokens.app)
_register(OPERATE, "topics", topics.app)
_register(
    DEVELOP, "chaos", chaos.chaos, "Place orders while injecting faults; check the invariants."
)
_register(DEVELOP, "schemas", schemas.app)
_register(DEVELOP, "events", events.app)


def bench_installed() -> bool:
    """Whether the ``choreo[bench]`` extra is installed (found, not imported: start-up)."""
    return all(importlib.util.find_spec(name) is not None for name in BENCH_EXTRA)


if bench_installed():
    # The only import of bench from choreo, and an optional one: bench sits above choreo.
    from bench.cli import app as bench_app

    _register(DEVELOP, "bench", bench_app)


def kafka_unreachable(error: BaseException) -> StackError | None:
    """``error`` as Choreo's when it is aiokafka's failure to reach any broker, else None
    (aiokafka is not imported for this: a command that never loaded it cannot raise it)."""
    errors = sys.modules.get("aiokafka.errors")
    if errors is None or not isinstance(error, errors.KafkaConnectionError):
        return None
    servers = get_settings().kafka_bootstrap_servers
    local = servers == local_kafka(get_settings().state_dir)
    return StackError(f"cannot reach Kafka at {servers}.{START_THE_LOCAL_STACK if local else ''}")


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
    except Exception as exc:
        # One line, no traceback, for a ChoreoError a command left uncaught (PostgreSQL down
        # when `choreo run` starts, say) and for the broker down, whichever command found it.
        error = exc if isinstance(exc, ChoreoError) else kafka_unreachable(exc)
        if error is None:
            raise
        print_error(error)
        raise SystemExit(1) from None
