"""`choreo dlq`: dead letters waiting for attention, and redriving them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
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
        order = (d.original_key or b"").decode(errors="replace")
        reason = d.reason if e.redriven_at is None else f"(redriven) {d.reason}"
        event = stacked(d.event_type or "?", d.consumer)
        table.add_row(e.id, order, event, str(d.attempts), reason[:160])
    out.print(readable(table, "id", "order", "event type"))
    out.print(f"{len(entries)} dead letter(s)")


@app.command("show")
def dlq_show(
    entry_id: Annotated[str, typer.Argument(help="partition:offset from `list`.")],
) -> None:
    """Everything about one dead letter, the original message included (base64)."""
    entries = {e.id: e for e in _dead_letters(include_redriven=True)}
    if entry_id not in entries:
        fail(ChoreoError(f"no dead letter {entry_id}"))
    print_json(_letter_json(entries[entry_id], full=True))


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
