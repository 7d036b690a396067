"""`choreo events`: publish every catalog event and read it back; follow the topics."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import asdict
from typing import Annotated

import orjson
import typer
from rich.table import Table

from choreo.cli.common import JsonFlag, command_group, fail, out, print_json, readable, stacked
from events.errors import ChoreoError
from events.settings import get_settings

app = command_group("Publish and read events on the topics.")


@app.command("roundtrip")
def events_roundtrip(as_json: JsonFlag = False) -> None:
    """Publish one example of every catalog event for a new order, read each back from Kafka,
    decode it and compare. Exit code 1 if any event did not come back identical."""
    from choreo.eventtools import round_trip  # aiokafka: see common

    try:
        results = asyncio.run(round_trip(get_settings()))
    except ChoreoError as exc:
        fail(exc)
    if as_json:
        print_json([asdict(r) for r in results])
    else:
        # Reads at 80 columns: where each record landed as topic:partition@offset under its
        # event type.
        table = Table("event", "bytes", "schema", "result")
        for r in results:
            table.add_row(
                stacked(r.event_type, f"{r.topic}:{r.partition}@{r.offset}"),
                str(r.size),
                f"v{r.schema_version}",
                "[green]identical[/]" if r.equal else "[red]MISMATCH[/]",
            )
        out.print(readable(table, "event", "result"))
        ok = sum(r.equal for r in results)
        out.print(f"{ok}/{len(results)} events round-tripped through Kafka unchanged")
    if not all(r.equal for r in results):
        raise typer.Exit(1)


@app.command("tail")
def events_tail(
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", "-d", help="order, inventory, payment, ... (default: all)"),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print events as they arrive on the domain topics (Ctrl-C to stop)."""
    from choreo.eventtools import tail_rows  # aiokafka: see common
    from events.topics import event_topics

    settings = get_settings()
    known = sorted(t.removeprefix(settings.topic_prefix) for t in event_topics(settings))
    unknown = [d for d in domain or [] if d not in known]
    if unknown:  # its topic does not exist: the tail would wait for ever, silent
        fail(ChoreoError(f"no domain {unknown[0]!r} (the domains: {', '.join(known)})"))

    async def follow() -> None:
        async for decoded, row in tail_rows(
            settings, domains=domain or [], from_beginning=from_beginning, limit=limit
        ):
            if as_json:
                sys.stdout.write(orjson.dumps(row).decode() + "\n")
                sys.stdout.flush()
            elif isinstance(decoded, ChoreoError):
                out.print(f"[red]{row['at']}[/] undecodable: {row['error']}")
            else:
                env = decoded.envelope
                out.print(
                    f"[dim]{row['at']}[/] [bold]{env.event_type}[/] order={env.saga_key} "
                    f"id={env.event_id} by={env.producer}"
                )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())
