"""`choreo sagas`: the saga definitions the coordinator runs, as tables and Mermaid flows; the
sagas of every type as the generic read model (``saga_status``) has them: `list`, `status`,
`history` (querying the projector's tables, as `choreo orders ...` does); and `start`."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import pydantic
import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from choreo.cli.common import (
    WIDE,
    JsonFlag,
    choreo_client,
    command_group,
    console,
    fail,
    history_table,
    out,
    print_json,
    print_published,
    publish_traced,
    query,
    readable,
    refuse_a_used_key,
    stacked,
    steps_table,
    to_the_minute,
)
from choreo.cli.trace_view import show_trace
from events.errors import ChoreoError, field_problems
from events.model import Event, Message
from events.settings import get_settings
from projections.sagas_model import ENDED
from saga_coordinator.context import get_coordinator_settings
from sagas.definition import SagaDefinition
from sagas.drawing import mermaid, rows
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS

if TYPE_CHECKING:
    from projections.queries import Queries

T = TypeVar("T")

app = command_group(
    "The saga definitions the coordinator runs, its sagas of every type; start one."
)
SagaType = Annotated[str, typer.Argument(help="The saga type, e.g. order.")]
SagaKey = Annotated[str, typer.Argument(help="The saga's key, e.g. an order id.")]


def running_definitions() -> SagaRegistry:
    """The definitions with the knobs the coordinator would run them with (CHOREO_SAGA_*)."""
    return SAGAS.with_knobs(get_coordinator_settings().definition_overrides())


def refuse_an_unknown_type(registry: SagaRegistry, saga_type: str | None) -> None:
    """Fail naming the types there are, unless ``saga_type`` is one (or None: every type): a
    mistyped filter must not pass for "no such sagas"."""
    if saga_type is not None and saga_type not in registry.types:
        known = ", ".join(registry.types)
        fail(ChoreoError(f"no saga type {saga_type!r} (the coordinator runs: {known})"))


@app.command("definitions")
def sagas_definitions(as_json: JsonFlag = False) -> None:
    """Every saga type with its versions; new sagas start on the highest."""
    registry = running_definitions()
    found: list[dict[str, Any]] = [
        {
            "saga_type": saga_type,
            "versions": registry.versions(saga_type),
            "start": registry.current(saga_type).start.event_type,
            "key": registry.current(saga_type).key,
        }
        for saga_type in registry.types
    ]
    if as_json:
        print_json(found)
        return
    table = Table("saga type", "versions", "started by", "key")
    for d in found:
        table.add_row(d["saga_type"], ", ".join(map(str, d["versions"])), d["start"], d["key"])
    out.print(readable(table, "saga type"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return (
            f"{value['command']} (ack {value['acknowledged_by']}, every "
            f"{value['ack_timeout']}, at most {value['max_attempts']} sends)"
        )
    if isinstance(value, list):
        return "\n".join(map(str, value)) or "-"
    return str(value)


@app.command("show")
def sagas_show(
    saga_type: Annotated[str, typer.Argument(help="The saga type, e.g. order.")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="A version (default: the newest).")
    ] = None,
    as_mermaid: Annotated[
        bool, typer.Option("--mermaid", help="Print only the Mermaid flow.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """A definition: its steps, what starts and ends each, branches and joins, deadlines and
    compensations (with the knobs in force), then its flow as a Mermaid diagram."""
    registry = running_definitions()
    try:
        d = registry.current(saga_type) if version is None else registry.get(saga_type, version)
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))
    if as_json:
        print_json(
            {
                "saga_type": d.saga_type,
                "version": d.version,
                "key": d.key,
                "start": d.start.event_type,
                "reasons": list(d.reasons),
                "knobs": {k: str(v) for k, v in d.knob_values().items()},
                "steps": rows(d),
                "mermaid": mermaid(d),
            }
        )
        return
    if as_mermaid:
        out.print(mermaid(d), end="", markup=False, highlight=False)
        return
    out.print(f"[bold]{d.saga_type}[/] v{d.version}: started by {d.start.event_type}, key {d.key}")
    if out.width >= WIDE:
        out.print(_steps_table(d))
    else:  # seven columns do not read narrower: a block per step
        for row in rows(d):
            out.print(_steps_block(row))
    out.print()
    out.print("cancel reasons: " + ", ".join(d.reasons))
    out.print("\n[dim]Mermaid (paste into any Mermaid viewer):[/]")
    out.print(mermaid(d), end="", markup=False, highlight=False)


STEP_FIELDS = (
    ("after", "after"), ("triggered_by", "triggered by"), ("succeeds_on", "succeeds on"),
    ("fails_on", "fails on"), ("deadlines", "deadlines"), ("compensation", "undo"),
)  # fmt: skip


def _step_name(row: dict[str, Any]) -> str:
    name = row["step"] if row["critical"] else f"{row['step']} (optional)"
    return f"{name}\nwhen {row['when']}" if row["when"] else name


def _steps_table(d: SagaDefinition) -> Table:
    table = Table("step", *(title for _, title in STEP_FIELDS))
    for row in rows(d):
        table.add_row(_step_name(row), *(_cell(row[field]) for field, _ in STEP_FIELDS))
    return readable(table, "step")


def _steps_block(row: dict[str, Any]) -> Group:
    """One step as a block: its name, then a line per field it has."""
    fields = Table.grid(padding=(0, 1))
    fields.add_column(style="dim", no_wrap=True)
    fields.add_column(overflow="fold")
    for field, title in STEP_FIELDS:
        if row[field]:
            fields.add_row(f"  {title}", _cell(row[field]))
    return Group(Text(_step_name(row).replace("\n", " · "), style="bold"), fields)


@app.command("start")
def sagas_start(
    saga_type: Annotated[str, typer.Argument(help="The saga type, e.g. `return`.")],
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="The start event's fields as JSON.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            help="The saga's key (default: generated); one a saga has already is refused."
        ),
    ] = None,
    example: Annotated[
        bool,
        typer.Option(
            "--example", help="Print an example of the file for SAGA_TYPE instead of starting one."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the start event.")] = False,
) -> None:
    """Start a saga of any type: publish its start event from `--file` and print its key.

    The file holds the fields of the event that starts SAGA_TYPE (`choreo sagas show TYPE`
    names it, `choreo schemas show EVENT` lists its fields); they are checked against its
    schema before anything is published. `--example` prints a file to start from:
    `choreo sagas start return --example > return.json`.
    """
    try:
        model = running_definitions().current(saga_type).start.event
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))
    if example:
        _print_example(model.event_type)
        return
    event = _start_event(saga_type, model, file)
    if key is not None:
        refuse_a_used_key(saga_type, key)

    async def start() -> Message[Event]:
        async with choreo_client() as client:
            return await client.start_saga(saga_type, event, key)

    print_published(publish_traced(start), as_json)


def _start_event(saga_type: str, model: type[Event], file: Path | None) -> Event:
    """The start event read from ``file`` and checked against its model, or a failure that
    says where its fields and an example are."""
    if file is None:
        fail(
            ChoreoError(
                f"--file is required: the fields of {model.event_type} as JSON "
                f"(`choreo sagas start {saga_type} --example` prints one to start from)"
            )
        )
    try:
        return model.model_validate(orjson.loads(file.read_bytes()))
    except pydantic.ValidationError as exc:
        problems = field_problems(exc, "(event)")
        fail(
            ChoreoError(
                f"invalid {model.event_type}: {problems}. Its fields: `choreo schemas show "
                f"{model.event_type}`; an example: `choreo sagas start {saga_type} --example`"
            )
        )
    except (OSError, orjson.JSONDecodeError) as exc:
        fail(ChoreoError(f"cannot read {file}: {exc}"))


def _print_example(event_type: str) -> None:
    """The catalog's sample of a start event as the JSON `--file` takes, on stdout alone."""
    from choreo.cli.schemas import example_of

    sample = example_of(event_type)
    if sample is None:
        fail(
            ChoreoError(
                f"the catalog has no sample of {event_type} (contracts/samples.py); "
                f"`choreo schemas show {event_type}` lists its fields"
            )
        )
    print(orjson.dumps(sample, option=orjson.OPT_INDENT_2).decode())


def read_sagas(call: Callable[[Queries], Awaitable[T]]) -> T:
    """:func:`query` over ``saga_status``, which a projector older than the table lacks."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    import asyncpg

    try:
        return query(call)
    except asyncpg.UndefinedTableError:
        fail(ChoreoError("no saga read model yet: restart the projector, or rebuild it"))


@app.command("list")
def sagas_list(
    saga_type: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    status: Annotated[str | None, typer.Option(help="Only sagas in this status.")] = None,
    search: Annotated[str | None, typer.Option(help="Only sagas whose key contains this.")] = None,
    after: Annotated[
        str | None, typer.Option(help="List the sagas after this one (a key), as a page's end.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Sagas of every type, newest first: status, current steps, progress."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from projections import sagas_queries

    registry = running_definitions()
    refuse_an_unknown_type(registry, saga_type)

    async def page(q: Queries) -> list[dict[str, Any]] | None:
        cursor = await sagas_queries.position_of(q, after, saga_type) if after else None
        if after and cursor is None:
            return None
        return await sagas_queries.saga_page(
            q, saga_type, status=status, search=search, cursor=cursor, limit=limit + 1
        )

    found = read_sagas(page)
    if found is None:
        fail(ChoreoError(f"no saga {after} to list after"))
    rows, more = found[:limit], len(found) > limit
    if not rows and status is not None:
        _say_if_unknown(registry, saga_type, status)
    if as_json:
        print_json(rows)
        return
    # Five columns that read at 80, as `choreo orders list`: the version under the type, the
    # reason (or the steps waited on) under the status, the time without year and seconds.
    table = Table("saga", "key", "status", "progress", "started (UTC)")
    for r in rows:
        why = r["reason"] or ", ".join(r["current_steps"])
        table.add_row(
            stacked(r["saga_type"], f"v{r['version']}"),
            r["saga_key"],
            stacked(r["status"], why),
            f"{r['progress']['done']}/{r['progress']['expected']}",
            to_the_minute(r["started_at"]),
        )
    out.print(readable(table, "saga", "key", "status", "started (UTC)"))
    if more:
        next_page = rows[-1]["saga_key"]
        given = {"--type": saga_type, "--status": status, "--search": search}
        options = [f"{k} {shlex.quote(v)}" for k, v in given.items() if v]
        options += [f"--limit {limit}"] if limit != 50 else []
        again = " ".join(options)
        console.print(
            f"more: choreo sagas list{' ' + again if again else ''} --after"
            f" {shlex.quote(next_page)}",
            highlight=False,
        )


def _say_if_unknown(registry: SagaRegistry, saga_type: str | None, status: str) -> None:
    """Under an empty list: which statuses there are, when ``status`` is none of them (a
    typo, most likely; a retired version's status is still looked for)."""
    from projections.console.sagas_list import statuses

    types = [saga_type] if saga_type is not None else registry.types
    known = {k for t in types for k in statuses(registry, t, {})}
    if status not in known:
        console.print(f"no sagas in status {status!r}; the statuses: {', '.join(sorted(known))}")


@app.command("status")
def sagas_status(saga_type: SagaType, saga_key: SagaKey, as_json: JsonFlag = False) -> None:
    """Where a saga is: status, reason, current steps, progress, each step's timeline, the
    compensations (sent, acknowledged) and the sagas that name it (an order's returns)."""
    from projections import sagas_queries  # asyncpg: see sagas_list
    from projections.console.charts import captured

    async def read(q: Queries) -> dict[str, Any] | None:
        found = await sagas_queries.saga(q, saga_type, saga_key)
        if found is not None:
            registry = running_definitions()
            found["named_by"] = await sagas_queries.named_by(q, registry, saga_type, saga_key)
        return found

    row = read_sagas(read)
    if row is None:
        fail(ChoreoError(f"no {saga_type} saga {saga_key}"))
    if as_json:
        print_json(row)
        return
    reason = f" ({row['reason']})" if row["reason"] else ""
    progress = row["progress"]
    out.print(
        f"[bold]{saga_type} {saga_key}[/] v{row['version']} {row['status']}{reason}"
        f"  steps: {', '.join(row['current_steps']) or '-'}"
        f"  progress: {progress['done']}/{progress['expected']}"
    )
    started_with = ", ".join(f"{name} {value}" for name, value, _ in captured(row["attributes"]))
    if started_with:
        out.print(f"started with: {started_with}", highlight=False)
    named_by = ", ".join(
        f"{n['saga_type']} {n['saga_key']} ({n['status']})" for n in row["named_by"]
    )
    if named_by:
        out.print(f"named by: {named_by}", highlight=False)
    out.print(steps_table(row["steps"], ended=row["status"] in ENDED))
    if not row["compensations"]:
        return
    undo = Table("undo", "command", "sent", "sends", "acknowledged", title="compensations")
    for c in row["compensations"]:
        acked = c["acknowledged_at"][11:23] if c["acknowledged_at"] else "open"
        undo.add_row(c["step"], c["command"], c["sent_at"][11:23], str(c["attempts"]), acked)
    out.print(readable(undo, "undo", "command", "sent", "acknowledged"))


@app.command("history")
def sagas_history(saga_type: SagaType, saga_key: SagaKey, as_json: JsonFlag = False) -> None:
    """The saga's events in log order, with who produced them."""
    from projections import sagas_queries  # asyncpg: see sagas_list

    rows = read_sagas(lambda q: sagas_queries.history(q, saga_type, saga_key))
    if rows is None:
        fail(ChoreoError(f"no {saga_type} saga {saga_key}"))
    if as_json:
        print_json(rows)
        return
    out.print(history_table(rows))


@app.command("trace")
def sagas_trace(saga_type: SagaType, saga_key: SagaKey, as_json: JsonFlag = False) -> None:
    """The saga's trace from Jaeger: its id, a link to Jaeger's UI and the span tree (service,
    operation, duration). Found by the trace context its start event was logged with."""
    # httpx, asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from projections import sagas_queries
    from projections.traces import fetch_order_trace, fetch_trace

    try:
        start = running_definitions().current(saga_type).start.event_type
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))

    async def saga_and_trace(q: Queries) -> tuple[dict[str, Any] | None, str | None]:
        row = await sagas_queries.saga(q, saga_type, saga_key)
        return row, (await q.traceparent(saga_key, start) if row is not None else None)

    row, parent = read_sagas(saga_and_trace)
    if row is None:
        fail(ChoreoError(f"no {saga_type} saga {saga_key}"))
    settings = get_settings()
    try:
        if parent is None:  # logged without trace context (tracing was off): search its tag
            found = asyncio.run(fetch_order_trace(settings, saga_key))
        else:
            trace_id = parent.split("-")[1]
            loaded = asyncio.run(fetch_trace(settings, trace_id, timeout=10))
            if loaded is None:
                fail(
                    ChoreoError(
                        f"Jaeger has no trace {trace_id} of {saga_type} {saga_key}: not sampled,"
                        " not exported yet, or past its retention"
                    )
                )
            found = loaded
    except ChoreoError as exc:
        fail(exc)
    about = {"saga_type": saga_type, "saga_key": saga_key}
    show_trace(settings, found, f"{saga_type} {saga_key}", about, as_json=as_json)
