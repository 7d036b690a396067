"""`choreo stack`: start, stop and inspect the local stack (Kafka, PostgreSQL, Jaeger)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from choreo.cli.common import JsonFlag, command_group, console, fail, out, print_json
from events.errors import ChoreoError
from events.settings import get_settings

app = command_group("Start, stop and inspect the local stack (Kafka, PostgreSQL, Jaeger).")


def _status_table(statuses: list[dict[str, object]]) -> Table:
    """The components as a table; paths under the working directory relative to it, and
    wrapped rather than cut on a narrow terminal."""
    # No padding at the table's edges, the pid under the state: at 80 columns a log's path
    # (what one copies) fits on its line.
    table = Table(
        "component", "state", Column("address", overflow="fold"),
        Column("log / detail", overflow="fold"), pad_edge=False,
    )  # fmt: skip
    for s in statuses:
        state = "[green]running[/]" if s["running"] else "[red]stopped[/]"
        if s["external"]:
            state += " (external)"
        if s["pid"]:
            state += f"\npid {s['pid']}"
        table.add_row(
            str(s["name"]),
            state,
            str(s["address"]),
            _near(f"{s['log'] or ''}\n{s['detail']}".strip()),
        )
    return table


def _near(text: str) -> str:
    """``text`` with the working directory's absolute path left out of the paths in it."""
    here = Path.cwd()
    if here == Path(here.anchor):  # at the root every path would lose its first slash
        return text
    return text.replace(f"{here}{os.sep}", "")


@app.command("up")
def stack_up(
    brokers: Annotated[
        int | None,
        typer.Option(
            "--brokers",
            min=1,
            help="KRaft nodes of a new Kafka cluster, each a broker and a controller (3: a"
            " quorum of three, topics replicated 3 times with min.insync.replicas=2)."
            " Default: the size of the cluster already there, else CHOREO_KAFKA_BROKERS (1).",
        ),
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="A new Kafka secured: SASL_SSL with a local CA, a SCRAM-SHA-512 user per"
            " process and ACLs (also CHOREO_KAFKA_SECURE=1). Default: as the Kafka already"
            " there was formatted.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Install what is missing, start Kafka, PostgreSQL and Jaeger, wait until they answer,
    and create the topics. Idempotent: running it again changes nothing."""
    # httpx: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.stack import Stack
    from events.topics import provision_topics  # aiokafka: see common

    settings = get_settings()
    if secure:
        settings = settings.model_copy(update={"kafka_secure": True})
    try:
        stack = Stack(settings, brokers=brokers)
        statuses = stack.up(lambda line: console.print(f"[cyan]stack[/] {line}"))
        # The nodes' addresses `up` recorded, as the administrator: create the topics there.
        created = asyncio.run(provision_topics(stack.kafka.client_settings))
    except ChoreoError as exc:
        fail(exc)
    if created:
        console.print(f"[cyan]stack[/] created topics: {', '.join(created)}")
    rows = [asdict(s) for s in statuses]
    if as_json:
        print_json(rows)
    else:
        out.print(_status_table(rows))


@app.command("down")
def stack_down() -> None:
    """Stop the components this checkout started (data is kept in the state folder)."""
    # httpx: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.stack import Stack

    try:
        Stack().down(lambda line: console.print(f"[cyan]stack[/] {line}"))
    except ChoreoError as exc:
        fail(exc)


@app.command("status")
def stack_status(as_json: JsonFlag = False) -> None:
    """Show what runs, where, and where its logs are. Exit code 1 when anything is down."""
    # httpx: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.stack import Stack

    rows = [asdict(s) for s in Stack().status()]
    if as_json:
        print_json(rows)
    else:
        out.print(_status_table(rows))
    if not all(r["running"] for r in rows):
        raise typer.Exit(1)
