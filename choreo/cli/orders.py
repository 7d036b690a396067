"""`choreo orders`: place orders, answer approvals, and follow an order to its end.

Writes (`place`, `approve`, `reject`) publish events with :class:`ChoreoClient`; reads
(`status`, `list`, `history`) query the projector's read models; `trace` asks Jaeger.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from choreo.cli.common import (
    JsonFlag,
    choreo_client,
    command_group,
    fail,
    fail_invalid,
    history_table,
    json_object,
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
    traced_cli,
    waiting_for_an_answer,
)
from choreo.cli.trace_view import show_trace
from contracts.catalog import OrderPlaced
from contracts.order import STATUSES
from contracts.samples import SCENARIOS, scenario_order
from events.errors import ChoreoError
from events.model import Event, Message, utc_now
from events.settings import get_settings
from projections.console.charts import money
from projections.sagas_model import ENDED

app = command_group("Place orders and answer approvals.")

# Flags of `orders place` and the order.placed fields they set, shipping address apart.
ADDRESS_FLAGS = {
    "recipient": "recipient",
    "street": "line1",
    "city": "city",
    "postal_code": "postal_code",
    "country": "country_code",
}
ORDER_FLAGS = {
    "customer_id": "customer_id",
    "email": "customer_email",
    "name": "customer_name",
    "currency": "currency",
    "token": "payment_token",
}


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
    if file is not None:
        data = json_object(file)
    elif sample is not None:
        data = scenario_order(sample).model_dump()
    else:
        data = {}
    if "placed_at" not in data:
        data["placed_at"] = utc_now()
    address = dict(data.get("shipping_address") or {})
    for flag, key in ADDRESS_FLAGS.items():
        if fields.get(flag) is not None:
            address[key] = fields[flag]
    if address:
        data["shipping_address"] = address
    for flag, key in ORDER_FLAGS.items():
        if fields.get(flag) is not None:
            data[key] = fields[flag]
    if fields.get("items"):
        data["items"] = fields["items"]
    if "total_minor" not in data or fields.get("items"):
        # Items it cannot total, the model refuses, each with its reason.
        with contextlib.suppress(TypeError, ValueError, KeyError):
            data["total_minor"] = sum(
                int(i["quantity"]) * int(i["unit_price_minor"]) for i in data.get("items", [])
            )
    return OrderPlaced.model_validate(data)


# Long: fourteen options, one per order field, as Typer declares them; the body is short.
@app.command("place")
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
    order_id: Annotated[
        str | None,
        typer.Option(help="Order id (default: generated); one a saga has already is refused."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the placed event.")] = False,
) -> None:
    """Publish an `order.placed` event and print the order id.

    Build the order from flags, from `--file order.json` (the fields of order.placed), or from
    `--sample NAME`; flags override the file or sample. The total is computed from the items.
    """
    fields: dict[str, object] = {
        "customer_id": customer_id,
        "email": email,
        "name": name,
        "currency": currency,
        "token": token,
        "recipient": recipient,
        "street": street,
        "city": city,
        "postal_code": postal_code,
        "country": country,
        "items": [_parse_item(i) for i in item or []],
    }
    try:
        order = _order_from_input(file, sample, fields)
    except (ValueError, KeyError, OSError) as exc:  # pydantic's and JSON's errors are ValueErrors
        fail_invalid("order", exc)

    if order_id is not None:
        refuse_a_used_key("order", order_id)

    async def place() -> Message[Event]:
        async with choreo_client() as client:
            return await client.place_order(order, order_id)

    traced_cli()
    message = asyncio.run(place())
    print_published(message, as_json)


def _answer_approval(order_id: str, *, approved: bool, by: str, reason: str | None) -> None:
    """Publish the answer to an approval request, in the order's trace."""

    parent = waiting_for_an_answer("order", order_id, "order.placed")

    async def answer() -> None:
        async with choreo_client() as client:
            if approved:
                await client.approve(order_id, by=by, reason=reason, trace_parent=parent)
            else:
                await client.reject(order_id, by=by, reason=reason or "", trace_parent=parent)

    publish_traced(answer)
    out.print(f"{'approved' if approved else 'rejected'} {order_id}")


@app.command("approve")
def orders_approve(
    order_id: Annotated[str, typer.Argument(help="The order waiting for approval.")],
    by: Annotated[str, typer.Option("--by", help="Who approves.")],
    reason: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
) -> None:
    """Approve an order that waits for approval (publishes `order.approved`)."""
    _answer_approval(order_id, approved=True, by=by, reason=reason)


@app.command("reject")
def orders_reject(
    order_id: Annotated[str, typer.Argument(help="The order waiting for approval.")],
    by: Annotated[str, typer.Option("--by", help="Who rejects.")],
    reason: Annotated[str, typer.Option(help="Why.")],
) -> None:
    """Reject an order that waits for approval (publishes `order.rejected`)."""
    _answer_approval(order_id, approved=False, by=by, reason=reason)


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{flag}: not an ISO timestamp: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@app.command("status")
def orders_status(
    order_id: Annotated[str, typer.Argument(help="The order.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="ISO time: the order's state then, folded from the log."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The order's state as JSON.")] = False,
) -> None:
    """Where an order is: status, reason, current step, timeline and progress."""
    when = _when(as_of, "--as-of")
    row = query(lambda q: q.status(order_id, as_of=when))
    if row is None:
        fail(ChoreoError(f"no order {order_id}" + (f" as of {as_of}" if as_of else "")))
    if as_json:
        print_json(row)
        return
    reason = f" ({row['cancel_reason']})" if row["cancel_reason"] else ""
    progress = row["progress"]
    out.print(
        f"[bold]{order_id}[/] {row['status']}{reason}"
        f"  step: {row['current_step'] or '-'}"
        f"  progress: {progress['done']}/{progress['expected']}"
    )
    if row["customer_id"] is not None:
        total = money(row["total_minor"], row["currency"])
        out.print(f"customer {row['customer_id']}, total {total}", highlight=False)
    out.print(steps_table(row["timeline"], ended=row["status"] in ENDED))
    if row["compensations_done"]:
        out.print("compensations done: " + ", ".join(row["compensations_done"]))
    updated = (row["updated_at"] or "")[:23].replace("T", " ")
    out.print(f"trace    {row['trace_id'] or '-'}", highlight=False)  # a line each: 80 columns
    out.print(f"updated  {updated} UTC" if updated else "updated  -", highlight=False)


@app.command("list")
def orders_list(
    status: Annotated[str | None, typer.Option(help="Only orders with this status.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time: placed at or after.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Orders, newest first."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"--status must be one of {', '.join(STATUSES)}")
    when = _when(since, "--since")
    rows = query(lambda q: q.orders(status=status, since=when, limit=limit))
    if as_json:
        print_json(rows)
        return
    # Five columns that read at 80: the reason (or the step waited on) under the status, the
    # placing time without its year and seconds (`--json` has it whole).
    table = Table("order", "status", "progress", "total", "placed (UTC)")
    for r in rows:
        total = f"{(r['total_minor'] or 0) / 100:,.2f} {r['currency'] or ''}"
        why = r["cancel_reason"] or r["current_step"]
        table.add_row(
            r["order_id"],
            stacked(r["status"], why),
            f"{r['progress']['done']}/{r['progress']['expected']}",
            total,
            to_the_minute(r["placed_at"]),
        )
    out.print(readable(table, "order", "status", "placed (UTC)"))


@app.command("history")
def orders_history(
    order_id: Annotated[str, typer.Argument(help="The order.")],
    as_json: JsonFlag = False,
) -> None:
    """The order's audit trail: every event in log order, with who produced it."""
    rows = query(lambda q: q.history(order_id))
    if not rows:
        fail(ChoreoError(f"no order {order_id}"))
    if as_json:
        print_json(rows)
        return
    out.print(history_table(rows))


@app.command("trace")
def orders_trace(
    order_id: Annotated[str, typer.Argument(help="The order.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Trace id, link and spans as JSON.")
    ] = False,
) -> None:
    """The order's trace from Jaeger: its id, a link to Jaeger's UI and the span tree
    (service, operation, duration)."""
    # httpx: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from projections.traces import fetch_order_trace

    settings = get_settings()
    try:
        found = asyncio.run(fetch_order_trace(settings, order_id))
    except ChoreoError as exc:
        fail(exc)
    show_trace(settings, found, f"order {order_id}", {"order_id": order_id}, as_json=as_json)
