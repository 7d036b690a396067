"""`choreo`: run the local stack, provision topics, inspect schemas and events.

Every command reads its configuration from the environment (see the README's configuration
table) and prints readable text by default or JSON with ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import pydantic
import typer
from rich.console import Console
from rich.table import Table

from choreo.client import ChoreoClient, DeadLetterEntry
from contracts.catalog import OrderPlaced
from contracts.samples import SCENARIOS
from events.errors import ChoreoError
from events.model import Event, Message, utc_now
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
orders_app = typer.Typer(help="Place orders and answer approvals.")
dlq_app = typer.Typer(help="Inspect and redrive dead letters.")
projections_app = typer.Typer(help="Inspect and rebuild the read models.")
bench_app = typer.Typer(
    help="Benchmarks on the real stack; they report figures and never fail on them. "
    "`choreo bench [OPTIONS]` runs the saga benchmark."
)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(events_app, name="events")
app.add_typer(orders_app, name="orders")
app.add_typer(dlq_app, name="dlq")
app.add_typer(projections_app, name="projections")
app.add_typer(bench_app, name="bench")

if TYPE_CHECKING:
    from projections.queries import Queries

T = TypeVar("T")
console = Console(stderr=True)
out = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _traced_cli() -> None:
    """Export the CLI's spans (service `cli`), so an order's trace starts where it is placed;
    flushed when the command exits."""
    import atexit

    from events.tracing import configure_tracing, shutdown_tracing

    configure_tracing("cli", get_settings())
    atexit.register(shutdown_tracing)


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


# --------------------------------------------------------------------------- orders


def _parse_item(text: str) -> dict[str, object]:
    """``SKU:QTY:PRICE`` with the unit price in major units, e.g. ``SKU-RED-MUG:2:12.50``."""
    try:
        sku, qty, price = text.split(":")
        minor = Decimal(price) * 100
        if minor != minor.to_integral_value():
            raise ValueError("more than two decimals")
        return {"sku": sku, "quantity": int(qty), "unit_price_minor": int(minor)}
    except (ValueError, ArithmeticError) as exc:
        raise typer.BadParameter(
            f"{text!r}: expected SKU:QUANTITY:UNIT_PRICE, e.g. SKU-RED-MUG:2:12.50 ({exc})"
        ) from exc


def _order_from_input(
    file: Path | None, sample: str | None, fields: dict[str, object]
) -> OrderPlaced:
    from contracts.samples import scenario_order

    if file is not None:
        data = orjson.loads(file.read_bytes())
    elif sample is not None:
        data = scenario_order(sample).model_dump()
    else:
        data = {}
    if "placed_at" not in data:
        data["placed_at"] = utc_now()
    address = dict(data.get("shipping_address") or {})
    for flag, key in (
        ("recipient", "recipient"), ("street", "line1"), ("city", "city"),
        ("postal_code", "postal_code"), ("country", "country_code"),
    ):  # fmt: skip
        if fields.get(flag) is not None:
            address[key] = fields[flag]
    if address:
        data["shipping_address"] = address
    for flag, key in (
        ("customer_id", "customer_id"), ("email", "customer_email"), ("name", "customer_name"),
        ("currency", "currency"), ("token", "payment_token"),
    ):  # fmt: skip
        if fields.get(flag) is not None:
            data[key] = fields[flag]
    if fields.get("items"):
        data["items"] = fields["items"]
    if "total_minor" not in data or fields.get("items"):
        data["total_minor"] = sum(
            int(i["quantity"]) * int(i["unit_price_minor"]) for i in data.get("items", [])
        )
    return OrderPlaced.model_validate(data)


@orders_app.command("place")
def orders_place(
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Order as JSON.")] = None,
    sample: Annotated[
        str | None, typer.Option(help="A sample order: " + ", ".join(SCENARIOS))
    ] = None,
    item: Annotated[
        list[str] | None, typer.Option(help="SKU:QUANTITY:UNIT_PRICE, repeatable.")
    ] = None,
    customer_id: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    email: Annotated[str | None, typer.Option(help="Customer e-mail.")] = None,
    name: Annotated[str | None, typer.Option(help="Customer name.")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO 4217, e.g. EUR.")] = None,
    token: Annotated[str | None, typer.Option(help="Payment token.")] = None,
    recipient: Annotated[str | None, typer.Option(help="Ship to: recipient.")] = None,
    street: Annotated[str | None, typer.Option(help="Ship to: street and number.")] = None,
    city: Annotated[str | None, typer.Option(help="Ship to: city.")] = None,
    postal_code: Annotated[str | None, typer.Option(help="Ship to: postal code.")] = None,
    country: Annotated[str | None, typer.Option(help="Ship to: ISO country code.")] = None,
    order_id: Annotated[str | None, typer.Option(help="Order id (default: generated).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the placed event.")] = False,
) -> None:
    """Publish an `order.placed` event and print the order id.

    Build the order from flags, from `--file order.json` (the fields of order.placed), or from
    `--sample NAME`; flags override the file or sample. The total is computed from the items.
    """
    fields: dict[str, object] = {
        "customer_id": customer_id, "email": email, "name": name, "currency": currency,
        "token": token, "recipient": recipient, "street": street, "city": city,
        "postal_code": postal_code, "country": country,
        "items": [_parse_item(i) for i in item or []],
    }  # fmt: skip
    try:
        order = _order_from_input(file, sample, fields)
    except pydantic.ValidationError as exc:
        console.print("[bold red]invalid order:[/]")
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(order)"
            console.print(f"  {where}: {err['msg']}")
        raise typer.Exit(2) from None
    except (KeyError, OSError, orjson.JSONDecodeError) as exc:
        console.print(f"[bold red]invalid order:[/] {exc}")
        raise typer.Exit(2) from None

    async def place() -> Message[Event]:
        async with ChoreoClient() as client:
            return await client.place_order(order, order_id)

    _traced_cli()
    message = asyncio.run(place())
    if as_json:
        _print_json(
            {
                "envelope": message.envelope.model_dump(mode="json"),
                "event": message.event.model_dump(mode="json"),
            }
        )
    else:
        out.print(message.order_id)


async def _order_traceparent(order_id: str) -> str | None:
    """The order's trace context from the event log, so an answer joins the order's trace
    (None when the read models are not there: the answer then starts a trace of its own)."""
    from events.database import Database
    from projections.queries import Queries

    settings = get_settings()
    try:
        async with Database(settings, max_size=1) as db:
            queries = Queries(db, settings)
            return await queries.traceparent(order_id) if await queries.ready() else None
    except ChoreoError:
        return None


def _answer_approval(order_id: str, *, approved: bool, by: str, reason: str | None) -> None:
    """Publish the answer to an approval request, in the order's trace."""

    async def answer() -> None:
        parent = await _order_traceparent(order_id)
        async with ChoreoClient() as client:
            if approved:
                await client.approve(order_id, by=by, reason=reason, trace_parent=parent)
            else:
                await client.reject(order_id, by=by, reason=reason or "", trace_parent=parent)

    _traced_cli()
    try:
        asyncio.run(answer())
    except ChoreoError as exc:
        _fail(exc)
    out.print(f"{'approved' if approved else 'rejected'} {order_id}")


@orders_app.command("approve")
def orders_approve(
    order_id: Annotated[str, typer.Argument(help="The order waiting for approval.")],
    by: Annotated[str, typer.Option("--by", help="Who approves.")],
    reason: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
) -> None:
    """Approve an order that waits for approval (publishes `order.approved`)."""
    _answer_approval(order_id, approved=True, by=by, reason=reason)


@orders_app.command("reject")
def orders_reject(
    order_id: Annotated[str, typer.Argument(help="The order waiting for approval.")],
    by: Annotated[str, typer.Option("--by", help="Who rejects.")],
    reason: Annotated[str, typer.Option(help="Why.")],
) -> None:
    """Reject an order that waits for approval (publishes `order.rejected`)."""
    _answer_approval(order_id, approved=False, by=by, reason=reason)


def _query(call: Callable[[Queries], Awaitable[T]]) -> T:
    """Run one read-model query against the projector's tables."""
    from events.database import Database
    from projections.queries import Queries

    async def run() -> T:
        settings = get_settings()
        async with Database(settings, max_size=2) as db:
            queries = Queries(db, settings)
            if not await queries.ready():
                raise ChoreoError("no read models yet: is the projector running (`choreo run`)?")
            return await call(queries)

    try:
        return asyncio.run(run())
    except ChoreoError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{flag}: not an ISO timestamp: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@orders_app.command("status")
def orders_status(
    order_id: Annotated[str, typer.Argument(help="The order.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="ISO time: the order's state then, folded from the log."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The order_status row as JSON.")] = False,
) -> None:
    """Where an order is: status, reason, current step, timeline and progress."""
    when = _when(as_of, "--as-of")
    row = _query(lambda q: q.status(order_id, as_of=when))
    if row is None:
        _fail(ChoreoError(f"no order {order_id}" + (f" as of {as_of}" if as_of else "")))
        return
    if as_json:
        _print_json(row)
        return
    reason = f" ({row['cancel_reason']})" if row["cancel_reason"] else ""
    progress = row["progress"]
    out.print(f"[bold]{order_id}[/] {row['status']}{reason}"
              f"  step: {row['current_step'] or '-'}"
              f"  progress: {progress['done']}/{progress['expected']}")  # fmt: skip
    table = Table("step", "outcome", "started", "finished", "attempts")
    for step in row["timeline"]:
        table.add_row(
            step["step"], step["outcome"] or "…", (step["started_at"] or "")[11:23],
            (step["finished_at"] or "")[11:23], str(step["attempts"] or ""),
        )  # fmt: skip
    out.print(table)
    if row["compensations_done"]:
        out.print("compensations done: " + ", ".join(row["compensations_done"]))
    out.print(f"trace: {row['trace_id'] or '-'}  updated: {row['updated_at']}")


@orders_app.command("list")
def orders_list(
    status: Annotated[str | None, typer.Option(help="Only orders with this status.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time: placed at or after.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Orders, newest first."""
    from contracts.order import STATUSES

    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"--status must be one of {', '.join(STATUSES)}")
    when = _when(since, "--since")
    rows = _query(lambda q: q.orders(status=status, since=when, limit=limit))
    if as_json:
        _print_json(rows)
        return
    table = Table("order", "status", "reason", "step", "progress", "total", "placed")
    for r in rows:
        total = f"{(r['total_minor'] or 0) / 100:.2f} {r['currency'] or ''}"
        table.add_row(
            r["order_id"], r["status"], r["cancel_reason"] or "", r["current_step"] or "",
            f"{r['progress']['done']}/{r['progress']['expected']}", total,
            (r["placed_at"] or "")[:19],
        )  # fmt: skip
    out.print(table)


@orders_app.command("history")
def orders_history(
    order_id: Annotated[str, typer.Argument(help="The order.")],
    as_json: JsonFlag = False,
) -> None:
    """The order's audit trail: every event in log order, with who produced it."""
    rows = _query(lambda q: q.history(order_id))
    if not rows:
        _fail(ChoreoError(f"no order {order_id}"))
    if as_json:
        _print_json(rows)
        return
    table = Table("time", "event", "producer", "summary")
    for r in rows:
        table.add_row(r["occurred_at"][11:23], r["event_type"], r["producer"], r["summary"])
    out.print(table)


@projections_app.command("status")
def projections_status(as_json: JsonFlag = False) -> None:
    """How far the projector is: lag per partition, last event time, events/s, totals."""

    async def both(q: Queries) -> dict[str, Any]:
        return {**await q.projection_status(), "summary": await q.summary()}

    data = _query(both)
    if as_json:
        _print_json(data)
        return
    table = Table("topic", "partition", "end offset", "projected", "lag")
    for p in data["lag"]:
        table.add_row(
            p["topic"], str(p["partition"]), str(p["end_offset"]), str(p["projected"]),
            str(p["lag"]),
        )  # fmt: skip
    out.print(table)
    out.print(
        f"{data['events']} events logged, total lag {data['total_lag']}, last event at "
        f"{data['last_event_at']}, {data['events_per_second_1m']} events/s over the last minute"
    )
    summary = data["summary"]
    out.print(f"orders: {summary['orders']} {summary['by_status']}")
    if summary["by_cancel_reason"]:
        out.print(f"cancelled by reason: {summary['by_cancel_reason']}")


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[
        str, typer.Argument(help="order_status (with order_history and summary) or all.")
    ] = "all",
    verify: Annotated[
        bool, typer.Option("--verify", help="Compare rebuilt and live rows; exit 1 if any differ.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Replay the log from the beginning into shadow tables and swap them in atomically.
    Queries keep answering from the live tables meanwhile."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )  # fmt: skip

    from projections.rebuild import rebuild

    if name not in {"all", "order_status", "order_history", "summary"}:
        raise typer.BadParameter("NAME is order_status, order_history, summary or all")
    started = time.monotonic()
    with Progress(
        TextColumn("replaying the log"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"), TimeRemainingColumn(),
        console=console, transient=as_json,
    ) as bar:  # fmt: skip
        task = bar.add_task("replay", total=None, rate="-")

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

        try:
            report = asyncio.run(rebuild(get_settings(), verify=verify, progress=progress))
        except ChoreoError as exc:
            _fail(exc)
            return
    if as_json:
        _print_json(report.to_json())
    else:
        out.print(
            f"rebuilt {report.orders} orders from {report.events} events in "
            f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s); "
            f"{report.caught_up} caught up during the swap"
        )
        if verify:
            out.print(f"verify: {len(report.differences)} difference(s)")
            for line in report.differences:
                out.print(f"  {line}")
    if verify and report.differences:
        raise typer.Exit(1)


@orders_app.command("trace")
def orders_trace(
    order_id: Annotated[str, typer.Argument(help="The order.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Trace id, link and spans as JSON.")
    ] = False,
) -> None:
    """The order's trace from Jaeger: its id, a link to Jaeger's UI and the span tree
    (service, operation, duration)."""
    from rich.tree import Tree

    from choreo.traces import SpanNode, fetch_order_trace

    settings = get_settings()
    try:
        found = asyncio.run(fetch_order_trace(settings, order_id))
    except ChoreoError as exc:
        _fail(exc)
        return
    link = f"{settings.jaeger_query_url.rstrip('/')}/trace/{found.trace_id}"
    if as_json:
        _print_json(
            {
                "order_id": order_id,
                "trace_id": found.trace_id,
                "link": link,
                "services": sorted(found.services),
                "spans": [s.to_json() for s in found.spans],
                "other_traces": found.other_traces,
            }
        )
        return
    out.print(f"trace [bold]{found.trace_id}[/] ({len(found.spans)} spans) {link}")
    origin = found.spans[0].start_us if found.spans else 0

    def add(tree: Tree, node: SpanNode) -> None:
        offset = (node.start_us - origin) / 1000
        label = (
            f"[cyan]{node.service}[/] {node.name} "
            f"[dim]+{offset:.1f} ms, {node.duration_us / 1000:.1f} ms[/]"
        )
        if node.events:
            label += f" [yellow]{', '.join(node.events)}[/]"
        branch = tree.add(label)
        for child in node.children:
            add(branch, child)

    root = Tree(f"order {order_id}")
    for node in found.roots:
        add(root, node)
    out.print(root)
    if found.other_traces:
        out.print(f"also in other traces: {', '.join(found.other_traces)}")


# --------------------------------------------------------------------------- dlq


def _dead_letters(include_redriven: bool) -> list[DeadLetterEntry]:
    async def read() -> list[DeadLetterEntry]:
        async with ChoreoClient() as client:
            return await client.dead_letters(include_redriven=include_redriven)

    return asyncio.run(read())


def _letter_json(entry: DeadLetterEntry, full: bool) -> dict[str, object]:
    data: dict[str, object] = {"id": entry.id, **entry.letter.model_dump(mode="json")}
    data["redriven_at"] = entry.redriven_at.isoformat() if entry.redriven_at else None
    if not full:
        for key in ("value_b64", "key_b64", "headers"):
            data.pop(key, None)
    return data


@dlq_app.command("list")
def dlq_list(
    include_redriven: Annotated[
        bool, typer.Option("--all", help="Include dead letters already redriven.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters waiting for attention: id, consumer, event, reason, attempts."""
    entries = _dead_letters(include_redriven)
    if as_json:
        _print_json([_letter_json(e, full=False) for e in entries])
        return
    table = Table("id", "consumer", "event type", "order", "attempts", "reason")
    for e in entries:
        d = e.letter
        order = (d.original_key or b"").decode(errors="replace")
        reason = d.reason if e.redriven_at is None else f"(redriven) {d.reason}"
        table.add_row(e.id, d.consumer, d.event_type or "?", order, str(d.attempts), reason[:80])
    out.print(table)
    out.print(f"{len(entries)} dead letter(s)")


@dlq_app.command("show")
def dlq_show(
    entry_id: Annotated[str, typer.Argument(help="partition:offset from `list`.")],
) -> None:
    """Everything about one dead letter, the original message included (base64)."""
    entries = {e.id: e for e in _dead_letters(include_redriven=True)}
    if entry_id not in entries:
        _fail(ChoreoError(f"no dead letter {entry_id}"))
    _print_json(_letter_json(entries[entry_id], full=True))


@dlq_app.command("redrive")
def dlq_redrive(
    entry_ids: Annotated[list[str] | None, typer.Argument(help="Ids from `list`.")] = None,
    all_pending: Annotated[bool, typer.Option("--all", help="Redrive every pending one.")] = False,
) -> None:
    """Publish dead-lettered messages again, unchanged, to their source topics."""
    if not entry_ids and not all_pending:
        _fail(ChoreoError("name dead letter ids, or --all"))

    async def redrive() -> list[DeadLetterEntry]:
        async with ChoreoClient() as client:
            ids = entry_ids or [e.id for e in await client.dead_letters()]
            return await client.redrive(ids) if ids else []

    try:
        done = asyncio.run(redrive())
    except ChoreoError as exc:
        _fail(exc)
        return
    out.print(f"redrove {len(done)} message(s)")


NOISE_LABELS = {"job", "instance", "service_instance_id"}


@app.command("metrics")
def metrics_cmd(
    match: Annotated[str, typer.Option(help="Only metrics whose name contains this.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Choreo's metrics as the collector (Jaeger) serves them: events by outcome, handler
    latency, saga durations, compensations, dead letters, consumer lag."""
    import re

    import httpx

    url = get_settings().metrics_url
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError as exc:
        _fail(ChoreoError(f"cannot read metrics at {url}: {exc}"))
        return
    sample = re.compile(r"^(choreo_[a-z_]+)(?:\{(.*)\})? ([0-9.eE+-]+|NaN)$")
    label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        found = sample.match(line)
        if found is None or found.group(1).endswith("_bucket") or match not in found.group(1):
            continue
        labels = {
            k: v
            for k, v in label.findall(found.group(2) or "")
            if not k.startswith(("otel_", "telemetry_")) and k not in NOISE_LABELS
        }
        rows.append({"name": found.group(1), "labels": labels, "value": float(found.group(3))})
    if as_json:
        _print_json(rows)
        return
    table = Table("metric", "labels", "value")
    for r in sorted(rows, key=lambda r: (r["name"], str(r["labels"]))):
        labels_text = " ".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        table.add_row(str(r["name"]), labels_text, f"{r['value']:g}")
    out.print(table)


# --------------------------------------------------------------------------- processes


@app.command("service")
def service(
    name: Annotated[
        str,
        typer.Argument(
            help="inventory, payment, shipping, crm, email, saga-coordinator, projector, api"
        ),
    ],
) -> None:
    """Run one Choreo process in the foreground until SIGTERM or Ctrl-C."""
    from choreo.supervisor import load_runner

    try:
        runner = load_runner(name)
    except KeyError as exc:
        _fail(ChoreoError(str(exc.args[0])))
        return
    runner(get_settings())


@app.command("replay")
def replay_cmd(
    name: Annotated[
        str, typer.Argument(help="inventory, payment, shipping, crm, email or coordinator")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Rebuild a process's own tables from the log, with no new side effects: no charge, mail
    or booking, nothing published. Its schema is DROPPED and rebuilt. The process must be
    stopped (refused while its consumer group has members; a killed process leaves it after
    the session timeout) and run with the same CHOREO_* configuration. Exits 1 if some
    message could not be replayed as it went live."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from choreo.replay import replay

    started = time.monotonic()
    with Progress(
        TextColumn(f"replaying {name}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"), console=console, transient=as_json,
    ) as bar:  # fmt: skip
        task = bar.add_task("replay", total=None, rate="-")

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

        try:
            report = asyncio.run(replay(get_settings(), name, progress=progress))
        except ChoreoError as exc:
            _fail(exc)
            return
    if as_json:
        _print_json(report.to_json())
    else:
        out.print(
            f"replayed {report.replayed} of {report.inputs} messages into {report.process} in "
            f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s); skipped: "
            f"{report.skipped} without handler, {report.undecodable} undecodable, "
            f"{report.duplicates} duplicates, {report.dead_lettered} dead-lettered "
            f"({report.give_up_hooks} give-up hooks replayed); timers fired: "
            f"{report.timers_fired}"
        )
        for line in report.divergent:
            out.print(f"  [red]divergent:[/] {line}")
        for line in report.unexplained:
            out.print(f"  [red]not reproduced:[/] {line}")
    if not report.exact:
        raise typer.Exit(1)


def _run_pid_file() -> Path:
    return get_settings().state_dir / "run.pid"


@app.command("run")
def run(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run just these processes.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background; log to .state/run.log.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Show the processes' JSON log lines as they are.")
    ] = False,
) -> None:
    """Run all services, the saga coordinator and the projector as supervised processes
    (restarted when they crash) with one log stream; Ctrl-C or SIGTERM stops them cleanly."""
    from choreo.registry import NAMES
    from choreo.supervisor import Supervisor

    names = only or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        known = ", ".join(NAMES)
        _fail(ChoreoError(f"unknown process(es) {', '.join(unknown)}; one of {known}"))
    if detach:
        _detach(names)
        return

    def echo(name: str, color: str, line: str) -> None:
        out.print(f"[{color}]{name:>16}[/] | {line}", markup=True, highlight=False, soft_wrap=True)

    asyncio.run(Supervisor(names, echo=echo, raw=raw).run())


def _detach(names: list[str]) -> None:
    import subprocess

    pid_file = _run_pid_file()
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        out.print(f"already running (pid {pid_file.read_text().strip()}); `choreo stop` first")
        return
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_path = pid_file.with_name("run.log")
    args = [sys.executable, "-m", "choreo", "run"]
    for name in names:
        args += ["--only", name]
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    pid_file.write_text(str(proc.pid))
    start = log_path.stat().st_size if log_path.exists() else 0
    _wait_ready(names, log_path, start, proc)
    out.print(f"choreo running in the background (pid {proc.pid}); logs: {log_path}")
    out.print("stop it with: choreo stop")


def _wait_ready(
    names: list[str], log_path: Path, start: int, proc: object, timeout: float = 120.0
) -> None:
    """Wait until every process has logged that it is ready (read from the run log)."""
    import time

    deadline = time.monotonic() + timeout
    pending = set(names)
    with console.status("starting " + ", ".join(sorted(pending))) as status:
        while pending:
            with log_path.open("rb") as log_file:
                log_file.seek(start)
                text = log_file.read().decode(errors="replace")
            pending = {n for n in pending if f"{n} ready" not in text}
            status.update("waiting for " + ", ".join(sorted(pending)))
            if getattr(proc, "poll", lambda: None)() is not None:
                _fail(ChoreoError(f"choreo run exited; see {log_path}"))
            if time.monotonic() > deadline:
                waiting = ", ".join(sorted(pending))
                _fail(ChoreoError(f"not ready after {timeout:.0f}s: {waiting}; see {log_path}"))
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@app.command("stop")
def stop(timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 30.0) -> None:
    """Stop a `choreo run --detach` (SIGTERM; its processes drain and commit first)."""
    import signal
    import time

    pid_file = _run_pid_file()
    if not pid_file.exists():
        out.print("not running")
        return
    pid = int(pid_file.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    out.print("stopped")


@app.command("demo")
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every order.")] = 120.0,
    as_json: JsonFlag = False,
) -> None:
    """Place one sample order per saga path on a running platform (`choreo run`), approve the
    large one, and show how each ends. Exit code 1 if any order did not finish in time."""
    from rich.live import Live

    from choreo.demo import DemoOrder, run_demo
    from contracts.samples import SCENARIOS as DESCRIPTIONS

    def table(orders: list[DemoOrder]) -> Table:
        t = Table("scenario", "order", "status", "reason / notes", "what it shows")
        for o in orders:
            color = {"completed": "green", "cancelled": "yellow"}.get(o.status, "cyan")
            t.add_row(
                o.scenario, o.order_id, f"[{color}]{o.status}[/]", o.detail,
                DESCRIPTIONS[o.scenario],
            )  # fmt: skip
        return t

    _traced_cli()
    with Live(table([]), console=out, refresh_per_second=4, transient=as_json) as live:
        orders = asyncio.run(
            run_demo(get_settings(), on_update=lambda o: live.update(table(o)), timeout_s=timeout)
        )
    if as_json:
        _print_json(
            [
                {
                    "scenario": o.scenario,
                    "order_id": o.order_id,
                    "status": o.status,
                    "cancel_reason": o.cancel_reason,
                    "notes": o.notes,
                }
                for o in orders
            ]
        )
    if not all(o.done for o in orders):
        console.print("[red]some orders did not finish; is `choreo run` running?[/]")
        raise typer.Exit(1)


# --------------------------------------------------------------------------- bench

OrdersOpt = Annotated[int, typer.Option("--orders", min=1, help="Orders to place.")]
RateOpt = Annotated[
    float | None,
    typer.Option("--rate", min=0.1, help="Orders per second (default: as fast as possible)."),
]
MixOpt = Annotated[
    str, typer.Option("--mix", help="Scenario weights, e.g. happy=70,large=10,declined=20.")
]
TracingOpt = Annotated[
    bool,
    typer.Option(
        "--tracing/--no-tracing",
        help="Export traces from the processes (--no-tracing: CHOREO_TRACING_ENABLED=false).",
    ),
]
TraceSampleOpt = Annotated[
    float,
    typer.Option(
        "--trace-sample",
        min=0.0,
        max=1.0,
        help="Share of orders traced, e.g. 0.1 (OTEL_TRACES_SAMPLER=parentbased_traceidratio).",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for every order to end.")
]
InFlightOpt = Annotated[
    int, typer.Option("--in-flight", min=1, help="Orders published but not yet acknowledged.")
]
PlotOpt = Annotated[
    Path | None,
    typer.Option("--plot", help="PNG to write (default: bench/results/bench-<timestamp>.png)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Folder for bench-<timestamp>.json (default: bench/results)."),
]


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    orders: OrdersOpt = 1000,
    rate: RateOpt = None,
    mix: MixOpt = "happy=70,large=10,declined=10,unshippable=10",
    tracing: TracingOpt = True,
    trace_sample: TraceSampleOpt = 1.0,
    timeout: TimeoutOpt = 900.0,
    in_flight: InFlightOpt = 1000,
    as_json: JsonFlag = False,
    plot: PlotOpt = None,
    out_dir: OutOpt = None,
) -> None:
    """The order saga end to end (same as `choreo bench saga`): start every process on a fresh
    topic prefix, place orders, auto-approve the large ones, follow each to its end; report
    throughput, latency, per-process cost and baselines measured in the same run."""
    if ctx.invoked_subcommand is None:
        _bench_saga(
            orders, rate, mix, tracing, trace_sample, timeout, in_flight, as_json, plot, out_dir
        )


@bench_app.command("saga")
def bench_saga(
    orders: OrdersOpt = 1000,
    rate: RateOpt = None,
    mix: MixOpt = "happy=70,large=10,declined=10,unshippable=10",
    tracing: TracingOpt = True,
    trace_sample: TraceSampleOpt = 1.0,
    timeout: TimeoutOpt = 900.0,
    in_flight: InFlightOpt = 1000,
    as_json: JsonFlag = False,
    plot: PlotOpt = None,
    out_dir: OutOpt = None,
) -> None:
    """The order saga end to end (the default of `choreo bench`).

    Every process on a fresh topic prefix, N orders of the mix (inventory seeded with ample
    stock), large ones approved at once by the bench; throughput, latency, per-process cost
    and baselines measured in the same run. The processes inherit the environment, so e.g.
    CHOREO_SAGA_INVENTORY_DEADLINE_S=600 changes a deadline for the run."""
    _bench_saga(
        orders, rate, mix, tracing, trace_sample, timeout, in_flight, as_json, plot, out_dir
    )


def _bench_saga(
    orders: int,
    rate: float | None,
    mix: str,
    tracing: bool,
    trace_sample: float,
    timeout: float,
    in_flight: int,
    as_json: bool,
    plot: Path | None,
    out_dir: Path | None,
) -> None:
    from bench import saga
    from bench.report import RESULTS_DIR, timestamp, write_plot

    try:
        weights = saga.parse_mix(mix)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mix") from None
    config = saga.SagaConfig(
        orders=orders, rate=rate, mix=weights, tracing=tracing, timeout_s=timeout,
        in_flight=in_flight, trace_sample=trace_sample,
    )  # fmt: skip
    stamp = timestamp()
    plot_path = plot or RESULTS_DIR / f"bench-{stamp}.png"
    json_path = (out_dir or RESULTS_DIR) / f"bench-{stamp}.json"
    with console.status("starting") as spinner:
        try:
            result = saga.run(
                config,
                log=lambda line: console.print(f"[cyan]bench[/] {line}"),
                status=lambda line: spinner.update(line),
            )
        except ChoreoError as exc:
            _fail(exc)
            return
    write_plot(
        plot_path, result.points, result.completions, placements=result.placements,
        title=f"choreo bench: {result.placed} orders",
    )  # fmt: skip
    document = {**result.to_json(), "files": {"plot": str(plot_path), "json": str(json_path)}}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    if as_json:
        _print_json(document)
    else:
        _print_saga_result(result)
    console.print(f"plot: {plot_path}")
    console.print(f"json: {json_path}")


def _tracing_label(cfg: Any) -> str:
    if not cfg.tracing:
        return "off"
    return "on" if cfg.trace_sample >= 1 else f"on, {cfg.trace_sample:.0%} of orders sampled"


def _print_saga_result(result: Any) -> None:
    from bench.report import fmt, ratio_table

    cfg = result.config
    mix = ",".join(f"{k}={v}" for k, v in cfg.mix.items())
    summary = Table(
        "figure", "value",
        title=f"choreo bench: {cfg.orders} orders ({mix}), rate {cfg.rate or 'max'}/s, "
        f"tracing {_tracing_label(cfg)}",
    )  # fmt: skip
    lat = result.latency
    for label, value in (
        ("orders finished / placed", f"{result.finished} / {result.placed}"),
        ("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(result.outcomes.items()))),
        ("unexpected outcomes", ", ".join(f"{k}: {v}" for k, v in result.unexpected.items())
         or "none"),
        ("approved by the bench", str(result.approvals)),
        ("order.needs_attention seen", str(result.needs_attention)),
        ("publishing took", f"{result.publish_s:.2f} s"),
        ("first publish → last terminal", f"{result.window_s:.2f} s"),
        ("orders/s (finished / window)", fmt(result.orders_per_second)),
        ("events produced", f"{result.events:,}"),
        ("events/s", fmt(result.events_per_second)),
        ("latency p50 / p95 / p99 / max",
         f"{fmt(lat.p50_ms)} / {fmt(lat.p95_ms)} / {fmt(lat.p99_ms)} / {fmt(lat.max_ms)} ms"),
        ("projector rows logged (lag at end)",
         f"{result.projector_rows:,} ({result.projector_lag:,})"),
    ):  # fmt: skip
        summary.add_row(label, value)
    out.print(summary)
    if result.env:
        out.print("settings: " + " ".join(f"{k}={v}" for k, v in result.env.items()))
    out.print("machine: " + "; ".join(f"{k}: {v}" for k, v in result.load.items()))
    procs = Table(
        "process", "consumed", "consumed/s", "CPU s (run)", "CPU % (run)", "CPU s (total)",
        "peak RSS MB", title="per process (CPU % of one core over the run window)",
    )  # fmt: skip
    for group, rows in (("", result.processes), ("[dim]", result.infrastructure)):
        for p in rows:
            share = p.cpu_s_run / result.window_s * 100 if p.cpu_s_run is not None else None
            procs.add_row(
                f"{group}{p.name}", fmt(p.consumed), fmt(p.consumed_per_s), fmt(p.cpu_s_run),
                fmt(share), fmt(p.cpu_s_total), fmt(p.peak_rss_mb),
            )  # fmt: skip
    out.print(procs)
    out.print(ratio_table(result.ratios()))
    if result.raw_kafka is not None:
        k = result.raw_kafka
        out.print(f"raw aiokafka: {k.messages:,} messages of {k.message_bytes} bytes "
                  f"(value + headers) in {k.seconds:.2f} s")  # fmt: skip
    for error in result.errors:
        out.print(f"[yellow]note:[/] {error}")
    unclean = {n: c for n, c in result.exit_codes.items() if c != 0}
    if unclean:
        out.print(f"[yellow]processes that did not exit cleanly:[/] {unclean}")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    out.print(f"took: {timings}")
    out.print(f"logs: {result.log_dir}")


@bench_app.command("rebuild")
def bench_rebuild(
    events: Annotated[
        int, typer.Option("--events", min=1, help="Events to write as synthetic order flows.")
    ] = 100_000,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds", min=1, help="Measure both this many times, alternating; keep the best."
        ),
    ] = 3,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Rebuild lanes (processes); 0: CHOREO_REBUILD_WORKERS (default one per CPU).",
        ),
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Projection rebuild from the log vs a raw read + decode.

    Writes K events as synthetic order flows to a fresh prefix's topics, then measures
    `read_to_end` + `Codec.decode` and `projections.rebuild` (events/s each, and the ratio),
    best of --rounds. The bench's projector schema and topics are deleted at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bench import rebuild as rebuild_bench
    from bench.report import fmt, ratio_table

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
        transient=True,
    ) as bar:  # fmt: skip
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=max(total, done))

        try:
            result = rebuild_bench.run(
                events, log=lambda line: console.print(f"[cyan]bench[/] {line}"),
                progress=progress, rounds=rounds, workers=workers,
            )  # fmt: skip
        except ChoreoError as exc:
            _fail(exc)
            return
    if as_json:
        _print_json(result.to_json())
        return
    table = Table("step", "events", "seconds", "events/s", title=f"choreo bench rebuild: "
                  f"{result.events:,} events, best of {result.rounds}")  # fmt: skip
    rb = result.rebuild
    for label, n, seconds in (
        ("produce (EventProducer, batched)", result.events, result.produce_s),
        ("raw: read_to_end + Codec.decode", result.raw_events, result.raw_s),
        ("projections.rebuild", rb.events, rb.seconds),
    ):
        table.add_row(label, f"{n:,}", f"{seconds:.2f}", fmt(n / seconds if seconds else None))
    out.print(table)
    out.print(ratio_table(result.ratios()))
    out.print(
        "rounds (s): raw " + ", ".join(f"{t:.2f}" for t in result.raw_rounds_s)
        + "; rebuild " + ", ".join(f"{t:.2f}" for t in result.rebuild_rounds_s)
        + f"; rebuild lanes: {result.workers or 'one per CPU'}"
    )  # fmt: skip
    out.print(
        f"rebuilt {rb.orders:,} orders ({rb.skipped} undecodable skipped); took "
        f"{result.total_s:.1f}s in all, cleanup {result.cleanup_s:.1f}s "
        f"(schema and topics of {result.prefix} deleted)"
    )


def main() -> None:
    """Entry point of the `choreo` command."""
    app()


if __name__ == "__main__":
    main()
