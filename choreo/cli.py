"""`choreo`: run the local stack, provision topics, inspect schemas and events.

Every command reads its configuration from the environment (see the README's configuration
table) and prints readable text by default or JSON with ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import asdict
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from events.errors import ChoreoError
from events.settings import get_settings

app = typer.Typer(
    help="Choreo: event-sourced choreography on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="Start, stop and inspect the local stack (Kafka, PostgreSQL, Jaeger).")
topics_app = typer.Typer(help="Provision and list Choreo's Kafka topics.")
schemas_app = typer.Typer(help="Inspect the Avro schemas in schemas/.")
events_app = typer.Typer(help="Publish and read events on the topics.")
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(events_app, name="events")

console = Console(stderr=True)
out = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _fail(exc: ChoreoError) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


# --------------------------------------------------------------------------- stack


def _status_table(statuses: list[dict[str, object]]) -> Table:
    table = Table("component", "state", "address", "pid", "log / detail")
    for s in statuses:
        state = "[green]running[/]" if s["running"] else "[red]stopped[/]"
        if s["external"]:
            state += " (external)"
        table.add_row(
            str(s["name"]),
            state,
            str(s["address"]),
            str(s["pid"] or "-"),
            f"{s['log'] or ''}\n{s['detail']}".strip(),
        )
    return table


@stack_app.command("up")
def stack_up(as_json: JsonFlag = False) -> None:
    """Install what is missing, start Kafka, PostgreSQL and Jaeger, wait until they answer,
    and create the topics. Idempotent: running it again changes nothing."""
    from choreo.stack import Stack
    from events.topics import provision_topics

    try:
        statuses = Stack().up(lambda line: console.print(f"[cyan]stack[/] {line}"))
        created = asyncio.run(provision_topics(get_settings()))
    except ChoreoError as exc:
        _fail(exc)
        return
    if created:
        console.print(f"[cyan]stack[/] created topics: {', '.join(created)}")
    rows = [asdict(s) for s in statuses]
    if as_json:
        _print_json(rows)
    else:
        out.print(_status_table(rows))


@stack_app.command("down")
def stack_down() -> None:
    """Stop the components this checkout started (data is kept in the state folder)."""
    from choreo.stack import Stack

    try:
        Stack().down(lambda line: console.print(f"[cyan]stack[/] {line}"))
    except ChoreoError as exc:
        _fail(exc)


@stack_app.command("status")
def stack_status(as_json: JsonFlag = False) -> None:
    """Show what runs, where, and where its logs are. Exit code 1 when anything is down."""
    from choreo.stack import Stack

    rows = [asdict(s) for s in Stack().status()]
    if as_json:
        _print_json(rows)
    else:
        out.print(_status_table(rows))
    if not all(r["running"] for r in rows):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- topics


@topics_app.command("create")
def topics_create() -> None:
    """Create the domain topics and the dead-letter topic that do not exist yet."""
    from events.topics import provision_topics

    try:
        created = asyncio.run(provision_topics(get_settings()))
    except ChoreoError as exc:
        _fail(exc)
        return
    out.print(f"created: {', '.join(created)}" if created else "all topics exist")


@topics_app.command("list")
def topics_list(as_json: JsonFlag = False) -> None:
    """The topics Choreo uses (event topics keep messages forever)."""
    from events.topics import all_topics

    names = all_topics(get_settings())
    if as_json:
        _print_json(names)
    else:
        for name in names:
            out.print(name)


# --------------------------------------------------------------------------- schemas


@schemas_app.command("list")
def schemas_list(as_json: JsonFlag = False) -> None:
    """Every event type with its schema versions and their single-object fingerprints."""
    from events.schemas import SchemaRegistry

    registry = SchemaRegistry.load(get_settings().schemas_dir)
    rows = [
        {
            "event_type": sv.event_type,
            "version": sv.version,
            "fingerprint": sv.fingerprint_hex,
            "path": str(sv.path.relative_to(get_settings().schemas_dir.parent)),
        }
        for event_type in registry.event_types
        for sv in registry.versions(event_type)
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table("event type", "version", "fingerprint (CRC-64-AVRO, LE)", "file")
    for r in rows:
        table.add_row(
            str(r["event_type"]), str(r["version"]), str(r["fingerprint"]), str(r["path"])
        )
    out.print(table)


# --------------------------------------------------------------------------- events


@events_app.command("roundtrip")
def events_roundtrip(as_json: JsonFlag = False) -> None:
    """Publish one example of every catalog event for a new order, read each back from Kafka,
    decode it and compare. Exit code 1 if any event did not come back identical."""
    from choreo.eventtools import round_trip

    try:
        results = asyncio.run(round_trip(get_settings()))
    except ChoreoError as exc:
        _fail(exc)
        return
    if as_json:
        _print_json([asdict(r) for r in results])
    else:
        table = Table("event type", "topic", "partition", "offset", "bytes", "schema", "result")
        for r in results:
            table.add_row(
                r.event_type, r.topic, str(r.partition), str(r.offset), str(r.size),
                f"v{r.schema_version}", "[green]identical[/]" if r.equal else "[red]MISMATCH[/]",
            )  # fmt: skip
        out.print(table)
        ok = sum(r.equal for r in results)
        out.print(f"{ok}/{len(results)} events round-tripped through Kafka unchanged")
    if not all(r.equal for r in results):
        raise typer.Exit(1)


@events_app.command("tail")
def events_tail(
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", "-d", help="order, inventory, payment, ... (default: all)"),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print events as they arrive on the domain topics (Ctrl-C to stop)."""
    from choreo.eventtools import tail

    async def follow() -> None:
        async for record, decoded in tail(
            get_settings(), domains=domain or [], from_beginning=from_beginning, limit=limit
        ):
            where = f"{record.topic}/{record.partition}@{record.offset}"
            if isinstance(decoded, ChoreoError):
                row: dict[str, object] = {"at": where, "error": str(decoded)}
            else:
                row = {
                    "at": where,
                    "envelope": decoded.envelope.model_dump(mode="json"),
                    "event": decoded.event.model_dump(mode="json"),
                }
            if as_json:
                sys.stdout.write(orjson.dumps(row).decode() + "\n")
                sys.stdout.flush()
            elif "error" in row:
                out.print(f"[red]{where}[/] undecodable: {row['error']}")
            else:
                env = decoded.envelope  # type: ignore[union-attr]
                out.print(
                    f"[dim]{where}[/] [bold]{env.event_type}[/] order={env.order_id} "
                    f"id={env.event_id} by={env.producer}"
                )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


def main() -> None:
    """Entry point of the `choreo` command."""
    app()


if __name__ == "__main__":
    main()
