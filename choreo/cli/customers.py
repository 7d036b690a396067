"""`choreo customers forget`: erase a customer's personal data by deleting their key."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape

from choreo.cli.common import command_group, console, fail, out, print_json
from choreo.customers import Forgotten, forget_customer
from events.errors import ChoreoError
from events.personal_data import ERASED
from events.settings import get_settings

app = command_group("Customers' personal data.")

PLAIN_LEFT = 3
"""Exit code: the key is gone, but events written before sealing keep plain personal data."""


def _say(done: Forgotten) -> None:
    who = f"customer {done.customer_id}"
    if done.key_deleted:
        out.print(
            f"{who} forgotten: their key is deleted, so their sealed e-mail, name and address "
            "lines, wherever they are kept (topics, tables, dead letters, backups), can no "
            f"longer be opened: they read as {escape(ERASED)}."
        )
    else:
        out.print(f"{who} has no key: nothing of theirs is sealed (unknown, or forgotten before).")
    if not done.log_checked:
        console.print(
            "[yellow]note:[/] no read models: events written before sealing were not searched."
        )
    if done.plain_events:
        console.print(
            f"[bold yellow]warning:[/] {len(done.plain_events)} event(s) of {who} were written "
            "before personal data was sealed; their personal fields are plain text in the "
            "topics and cannot be erased by forgetting:"
        )
        for e in done.plain_events:
            console.print(f"  {e.event_type} v{e.schema_version} {e.saga_key} ({e.event_id})")


@app.command("forget")
def customers_forget(
    customer_id: Annotated[str, typer.Argument(help="The customer's id (as in order.placed).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print what was erased as JSON.")] = False,
) -> None:
    """Erase the customer's personal data: delete their data key (crypto-shredding).

    Exit code 0 when done, 3 when events written before sealing keep plain personal data of
    theirs, 1 on error.
    """
    try:
        done = asyncio.run(forget_customer(get_settings(), customer_id))
    except ChoreoError as exc:
        fail(exc)
    if as_json:
        print_json(asdict(done))
    else:
        _say(done)
    if done.plain_events:
        raise typer.Exit(PLAIN_LEFT)
