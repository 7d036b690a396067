"""What every `choreo` command shares: the consoles, `--json`, failing, tracing, read models.

Start-up time: ``choreo --help`` imports every command module, so a module that pulls in
httpx (~250 ms here), asyncpg (~200 ms), aiokafka (~80 ms, through :func:`choreo_client`) or
the tracing SDK (~40 ms) is imported inside the command that needs it, with a comment saying
so; everything else is imported at the top.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, TypeVar

import orjson
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Column, Table
from rich.text import Text

from events.errors import ChoreoError
from events.settings import get_settings

if TYPE_CHECKING:
    from choreo.client import ChoreoClient
    from events.model import Event, Message
    from projections.queries import Queries

T = TypeVar("T")

console = Console(stderr=True)
"""Progress, notes and errors (stderr), so stdout stays parseable."""
out = Console()
"""Results (stdout)."""

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

MARKDOWN: Final = "markdown"
"""How every command's help text is read: as Markdown, so a docstring's paragraphs reflow to
the terminal and `code` is styled. Typer's default ("rich") keeps each line break of the
source, which at 80 columns left a short line after every long one."""


def command_group(help: str) -> typer.Typer:
    """A group of sub-commands (``choreo orders``, ``choreo stack``, …) with help as
    :data:`MARKDOWN`."""
    return typer.Typer(help=help, rich_markup_mode=MARKDOWN)


WIDE = 140
"""Terminal columns from which the widest tables (``demo``'s, ``sagas show``'s) print with
every column; narrower, they print their long texts under the table or as blocks."""


def readable(table: Table, *whole: str) -> Table:
    """``table`` with the columns headed ``whole`` (ids and keys, to copy into the next
    command) on one line at their longest cell's width, on a terminal of any width (80
    columns, or piped): Rich cut them with an ellipsis first. Other columns wrap, and cut what
    does not fit, as Rich does."""
    for column in table.columns:
        if column.header in whole:
            column.no_wrap = True
            column.min_width = max(
                (
                    cell_len(line)
                    for c in column.cells
                    if isinstance(c, str)
                    for line in Text.from_markup(c).plain.splitlines()
                ),
                default=0,
            )
    return table


def stacked(fact: str, under: str | None) -> str:
    """A cell of two lines, ``under`` dimmed below ``fact`` (just ``fact`` without it): how the
    tables keep to fewer columns at 80 (see :func:`readable`)."""
    return f"{fact}\n[dim]{under}[/]" if under else fact


def steps_table(steps: list[dict[str, Any]], *, ended: bool = False) -> Table:
    """A saga's steps: state, and each time with the event that marks it under it, the detail
    under the state: four columns that keep an event's name whole at 80 columns (folded where
    it must be). A step still pending when the saga ``ended`` is one it never started."""
    table = Table(
        "step", "state", Column("started", overflow="fold"), Column("finished", overflow="fold")
    )
    for step in steps:
        state = "not started" if ended and step["state"] == "pending" else step["state"]
        table.add_row(
            step["step"] if step["on_path"] else f"[dim]{step['step']}[/]",
            stacked(state, step["detail"] or step["reason"]),
            _when(step["started_at"], step["started_by"]),
            _when(step["finished_at"], step["finished_by"]),
        )
    return readable(table, "step", "state")


def _when(at: str | None, by: str | None) -> str:
    """A step's time of day and, under it, the event (or who) that marks it."""
    return "\n".join(part for part in ((at or "")[11:23], f"[dim]{by}[/]" if by else "") if part)


def look_up(call: Callable[[Queries], Awaitable[T]]) -> T | None:
    """``call`` on the read models, or None when they cannot be read (no projector yet,
    PostgreSQL down): for the checks a command makes before it publishes, which then let it
    go ahead as it did before it checked."""
    # asyncpg: imported here to keep `choreo --help` quick (see the module docstring).
    import asyncpg

    from events.database import Database
    from projections.queries import Queries

    async def run() -> T | None:
        settings = get_settings()
        async with Database(settings, max_size=1) as db:
            queries = Queries(db, settings)
            return await call(queries) if await queries.ready() else None

    try:
        return asyncio.run(run())
    except (ChoreoError, OSError, asyncpg.PostgresError):
        return None


def refuse_a_used_key(saga_type: str, key: str) -> None:
    """Fail when the read model has a saga under ``key`` already: the coordinator starts a
    key's saga once and ignores another start of its type (a start of another type under it
    is dead-lettered), so a second ``--key`` would print the key and start nothing."""
    from projections import sagas_queries  # asyncpg: see look_up

    found = look_up(lambda q: sagas_queries.key_owner(q, key))
    if found is not None:
        other, status = found
        fail(
            ChoreoError(
                f"{key} is the key of a {other} saga already ({status}): a key starts one saga,"
                f" and the coordinator would {'ignore' if other == saga_type else 'dead-letter'}"
                f" this start; `choreo sagas status {other} {key}` shows that saga"
            )
        )


def refuse_an_unknown_saga(saga_type: str, key: str) -> None:
    """Fail when the read models are there and have no ``saga_type`` saga ``key``."""
    found = look_up(lambda q: _known(q, saga_type, key))
    if found is False:
        fail(ChoreoError(f"no {saga_type} {key}"))


async def _known(queries: Queries, saga_type: str, key: str) -> bool:
    from projections import sagas_queries

    return await sagas_queries.saga(queries, saga_type, key) is not None


def waiting_for_an_answer(saga_type: str, key: str, start: str) -> str | None:
    """The trace context of the saga ``key`` (its ``start`` event's ``traceparent``), so an
    answer joins its trace; fails when the read models have no such saga or it waits for no
    one's answer (see :func:`awaiting_an_answer`)."""
    return awaiting_an_answer(saga_type, key, start)[1]


def awaiting_an_answer(
    saga_type: str, key: str, start: str
) -> tuple[dict[str, Any] | None, str | None]:
    """The row of the saga ``key`` and its ``start`` event's ``traceparent``; fails when the
    read models have no such saga or it waits for no one's answer (the coordinator would
    ignore the answer while the command said it was given). ``(None, None)``, and no check,
    when the read models cannot be read."""
    found = look_up(lambda q: _saga_and_trace(q, saga_type, key, start))
    if found is None:
        return None, None
    from projections import sagas_queries  # loaded by look_up's call already

    row, parent = found
    if row is None:
        fail(ChoreoError(f"no {saga_type} {key}"))
    if sagas_queries.waiting_on(row) is None:
        fail(ChoreoError(f"{saga_type} {key} is {row['status']}: it waits for no one's answer"))
    return row, parent


async def _saga_and_trace(
    queries: Queries, saga_type: str, key: str, start: str
) -> tuple[dict[str, Any] | None, str | None]:
    """The saga's row (None: no such saga) and its ``start`` event's ``traceparent``."""
    from projections import sagas_queries

    row = await sagas_queries.saga(queries, saga_type, key)
    return row, (await queries.traceparent(key, start) if row is not None else None)


def history_table(rows: list[dict[str, Any]]) -> Table:
    """An audit trail (`orders history`, `sagas history`): each event's time, its type whole
    with its producer under it, and its summary without the type it may repeat."""
    table = Table("time", "event", "summary")
    for r in rows:
        event_type, summary = r["event_type"], r["summary"] or ""
        if summary.startswith(event_type):  # the summary of a type without one of its own
            summary = summary[len(event_type) :].removeprefix(":").strip()
        table.add_row(r["occurred_at"][11:23], stacked(event_type, r["producer"]), escape(summary))
    return readable(table, "time", "event")


def to_the_minute(iso: str | None) -> str:
    """``2026-12-05T04:53:18.608+00:00`` → ``12-05 04:53``: a list's time, narrow enough for
    80 columns (``--json`` has it whole)."""
    return (iso or "")[5:16].replace("T", " ")


def print_json(value: object) -> None:
    """Print ``value`` as indented JSON on stdout (anything orjson cannot encode as ``str``)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def print_published(message: Message[Event], as_json: bool) -> None:
    """What a command published: its saga's key, or (``as_json``) the message, its personal
    data concealed as the log keeps it."""
    from events.personal_data import conceal

    if not as_json:
        out.print(message.saga_key)
        return
    print_json(
        {
            "envelope": message.envelope.model_dump(mode="json"),
            "event": conceal(message.event.model_dump(mode="json")),
        }
    )


def traced_cli() -> None:
    """Export the CLI's spans (service `cli`), so an order's trace starts where it is placed;
    flushed when the command exits."""
    from events.tracing import configure_telemetry, shutdown_telemetry  # the SDK, psutil

    configure_telemetry("cli", get_settings())
    atexit.register(shutdown_telemetry)


def publish_traced(publish: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's ``publish()`` with the CLI's spans exported (:func:`traced_cli`); its
    ChoreoError (a broker down, say) is the command's error."""
    traced_cli()
    try:
        return asyncio.run(publish())
    except ChoreoError as exc:
        fail(exc)


def choreo_client() -> ChoreoClient:
    """A :class:`~choreo.client.ChoreoClient` for a command that publishes or reads the
    dead letters."""
    from choreo.client import ChoreoClient  # aiokafka, the codec, cryptography

    return ChoreoClient()


def print_error(exc: ChoreoError) -> None:
    """``error: <exc>`` on stderr."""
    console.print(f"[bold red]error:[/] {exc}")


def fail(exc: ChoreoError) -> NoReturn:
    """Print ``exc`` as an error and exit with code 1."""
    print_error(exc)
    raise typer.Exit(1)


JSON_TYPES: Final = {list: "an array", str: "a string", int: "a number", float: "a number",
                     bool: "a boolean", type(None): "null"}  # fmt: skip


def json_object(file: Path) -> dict[str, Any]:
    """The JSON object in ``file`` (an event's fields); ValueError if it holds another JSON
    value (a list, a string ...), which the event's model would not take either."""
    data = orjson.loads(file.read_bytes())
    if not isinstance(data, dict):
        held = JSON_TYPES.get(type(data), type(data).__name__)
        raise ValueError(f"{file} holds {held}, not a JSON object of the event's fields")
    return data


def fail_invalid(what: str, exc: Exception) -> NoReturn:
    """Say why the input for ``what`` (an order, a return) is invalid, on stderr, and exit 2:
    each field a pydantic error names on a line of its own, else the error's message."""
    import pydantic  # the models' library, loaded by every command that reads one anyway

    if isinstance(exc, pydantic.ValidationError):
        console.print(f"[bold red]invalid {what}:[/]")
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or f"({what})"
            console.print(f"  {where}: {escape(err['msg'])}", highlight=False)
    else:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        console.print(f"[bold red]invalid {what}:[/] {escape(str(message))}", highlight=False)
    raise typer.Exit(2)


def fail_under(bar: Progress, exc: ChoreoError) -> NoReturn:
    """:func:`fail` from inside a progress bar: the bar goes with the error instead of staying
    under it (``replaying crm ━━━ 0/?`` after ``error: crm is running``)."""
    bar.live.transient = True
    fail(exc)


def query(call: Callable[[Queries], Awaitable[T]]) -> T:
    """Run one read-model query against the projector's tables."""
    # asyncpg: imported here to keep `choreo --help` quick (see the module docstring).
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
        fail(exc)
