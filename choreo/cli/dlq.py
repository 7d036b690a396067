"""`choreo dlq`: dead letters waiting for attention, and redriving them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from choreo.cli.common import (
    JsonFlag,
    choreo_client,
    command_group,
    fail,
    out,
    print_json,
    readable,
    stacked,
)
from events.errors import ChoreoError

if TYPE_CHECKING:
    from events.redrive import DeadLetterEntry

app = command_group("Inspect and redrive dead letters.")


def _dead_letters(include_redriven: bool) -> list[DeadLetterEntry]:
    async def read() -> list[DeadLetterEntry]:
        async with choreo_client() as client:
            return await client.dead_letters(include_redriven=include_redriven)

    return asyncio.run(read())


def _letter_json(entry: DeadLetterEntry, full: bool) -> dict[str, object]:
    data: dict[str, object] = {"id": entry.id, **entry.letter.model_dump(mode="json")}
    data["redriven_at"] = entry.redriven_at.isoformat() if entry.redriven_at else None
    if not full:
        for key in ("value_b64", "key_b64", "headers"):
            data.pop(key, None)
    return data


@app.command("list")
def dlq_list(
    include_redriven: Annotated[
        bool, typer.Option("--all", help="Include dead letters already redriven.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters waiting for attention: id, consumer, event, reason, attempts."""
    entries = _dead_letters(include_redriven)
    if as_json:
        print_json([_letter_json(e, full=False) for e in entries])
        return
    # Five columns that read at 80: the consumer under the event type, the reason wrapped.
    table = Table("id", "order", "event type", "attempts", Column("reason", overflow="fold"))
    for e in entries:
        d = e.letter
        order = d.order_id or ""
        reason = d.reason if e.redriven_at is None else f"(redriven) {d.reason}"
        event = stacked(d.event_type or "?", d.consumer)
        table.add_row(e.id, order, event, str(d.attempts), reason[:160])
    out.print(readable(table, "id", "order", "event type"))
    out.print(f"{len(entries)} dead letter(s)")


@app.command("show")
def dlq_show(
    entry_id: Annotated[str, typer.Argument(help="partition:offset from `list`.")],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the letter as JSON instead, the original key, value and headers in base64.",
        ),
    ] = False,
) -> None:
    """Everything about one dead letter: why and where it failed, and its original message.

    The message is shown decoded with the catalog's schemas (envelope and payload, personal
    data masked as on the console) or, when it does not decode, why not and its first bytes
    in hex."""
    entries = {e.id: e for e in _dead_letters(include_redriven=True)}
    if entry_id not in entries:
        fail(ChoreoError(f"no dead letter {entry_id}"))
    entry = entries[entry_id]
    if as_json:
        print_json(_letter_json(entry, full=True))
        return
    out.print(_letter_fields(entry))
    _print_message(entry.letter.original_value)


def _letter_fields(entry: DeadLetterEntry) -> Table:
    """The letter's facts, one a line: a field's name, then its value (folded, never cut)."""
    d = entry.letter
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="dim", no_wrap=True)
    fields.add_column(overflow="fold")
    state = f"redriven {entry.redriven_at.isoformat()}" if entry.redriven_at else "pending"
    if entry.redriven_at and entry.redriven_by:
        state += f" by {entry.redriven_by}"
    for name, value in (
        ("dead letter", entry.id),
        ("state", state),
        ("order", d.order_id),
        ("event type", d.event_type),
        ("event id", d.event_id),
        ("consumer", d.consumer),
        ("from", f"{d.source_topic} partition {d.source_partition} offset {d.source_offset}"),
        ("attempts", str(d.attempts)),
        ("dead at", d.dead_at.isoformat()),
        ("error", d.error_type),
        ("reason", d.reason),
        *((f"header {name}", value.decode(errors="replace")) for name, value in d.original_headers),
    ):
        fields.add_row(name, escape(value) if value is not None else "[dim]-[/]")
    return fields


def _print_message(value: bytes | None) -> None:
    """The original message, decoded with the catalog's schemas or in hex with why not."""
    from choreo.eventtools import make_codec  # the models and schemas: for this command only
    from events.settings import get_settings
    from projections.letters import HEX_BYTES, decoded

    message = decoded(make_codec(get_settings()), value)
    if message["json"] is not None:
        out.print("\n[bold]message[/] (personal data masked)")
        out.print(message["json"], markup=False, highlight=False)
        return
    out.print(f"\n[bold]message[/]: does not decode: {escape(message['error'])}")
    shown = "all" if message["size"] <= HEX_BYTES else f"the first {HEX_BYTES}"
    out.print(f"[dim]{shown} of its {message['size']:,} bytes in hex:[/]")
    out.print(message["hex"], markup=False, highlight=False, overflow="fold")


@app.command("redrive")
def dlq_redrive(
    entry_ids: Annotated[list[str] | None, typer.Argument(help="Ids from `list`.")] = None,
    all_pending: Annotated[bool, typer.Option("--all", help="Redrive every pending one.")] = False,
) -> None:
    """Publish dead-lettered messages again, unchanged, to their source topics."""
    if not entry_ids and not all_pending:
        fail(ChoreoError("name dead letter ids, or --all"))

    async def redrive() -> list[DeadLetterEntry]:
        async with choreo_client() as client:
            ids = entry_ids or [e.id for e in await client.dead_letters()]
            return await client.redrive(ids) if ids else []

    try:
        done = asyncio.run(redrive())
    except ChoreoError as exc:
        fail(exc)
    out.print(f"redrove {len(done)} message(s)")
