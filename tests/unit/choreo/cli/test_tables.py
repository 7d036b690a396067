"""The CLI's lists keep their ids whole at 80 columns (or piped), to copy into the next
command: Rich cut them with an ellipsis first (`ord-2d10…`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from choreo.cli.common import history_table, readable

ORDERS = [f"ord-{n:012x}" for n in (0x2D104E394F4A, 0x5AC4D5D4AF7E, 0x30D66ED88C25)]


def _orders_list() -> Table:
    table = Table("order", "status", "reason", "step", "progress", "total", "placed")
    for order in ORDERS:
        table.add_row(
            order, "[green]completed[/]", "shipment_failed", "", "5/5", "33.99 EUR",
            "2026-12-05T04:19:30+00:00",
        )  # fmt: skip
    return table


def _render(table: Table, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_the_whole_columns_are_never_cut_and_the_rest_fits_the_width():
    text = _render(readable(_orders_list(), "order"))
    for order in ORDERS:
        assert f"│ {order} │" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_without_it_rich_cuts_the_ids():
    text = _render(_orders_list())
    assert not any(order in text for order in ORDERS)


def test_a_key_column_takes_the_width_of_its_longest_cell_markup_aside():
    table = Table("type", "key")
    table.add_row("order", "[bold]ord-1[/]")
    table.add_row("payroll", "run-2026-12-a-much-longer-key")
    [_, key] = readable(table, "key").columns
    assert key.no_wrap
    assert key.min_width == len("run-2026-12-a-much-longer-key")
    assert "run-2026-12-a-much-longer-key" in _render(table, width=40)


def test_a_cell_of_two_lines_is_as_wide_as_its_longer_line():
    table = Table("status")
    table.add_row("cancelled\n[dim]payment_declined[/]")
    [status] = readable(table, "status").columns
    assert status.min_width == len("payment_declined")


def test_the_breakers_table_reads_at_80_columns(monkeypatch):
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from choreo.cli import app
    from choreo.cli import breakers as breakers_cli
    from events.breaker_board import BreakerRow

    error = "GatewayUnavailable: payment gateway unavailable (attempt 2)"
    at = datetime(2026, 12, 5, 4, 53, 15, tzinfo=UTC)
    rows = [
        BreakerRow(process="payment", instance="payment-1", provider="gateway", state="closed",
                   since=at, failures=0, opened=1, deferred=3, in_use=0, concurrency=2,
                   fault_rate=0.0, last_error=error, updated_at=at, stale=False),
    ]  # fmt: skip
    monkeypatch.setattr(breakers_cli, "_with_db", lambda call: rows)
    result = CliRunner().invoke(app, ["breakers"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    for text in ("payment", "gateway", "closed", "04:53:15", "0 · 1 · 3", "0/2"):
        assert text in result.output, text
    assert "attempt 2" in result.output  # the error wraps, whole


def test_the_dead_letters_list_reads_at_80_columns(monkeypatch):
    import base64
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from choreo.cli import app
    from choreo.cli import dlq as dlq_cli
    from events.dlq import DeadLetter
    from events.redrive import DeadLetterEntry

    letter = DeadLetter(
        reason="the mailbox at bounce.example rejected the message (hard bounce)",
        error_type="PermanentError", consumer="choreo.email", source_topic="choreo.shipment",
        source_partition=0, source_offset=7, attempts=1, dead_at=datetime.now(UTC),
        event_type="shipment.scheduled", key_b64=base64.b64encode(b"ord-552ce5c715b8").decode(),
    )  # fmt: skip
    monkeypatch.setattr(dlq_cli, "_dead_letters", lambda include: [DeadLetterEntry("2:0", letter)])
    result = CliRunner().invoke(app, ["dlq", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    for text in ("2:0", "ord-552ce5c715b8", "shipment.scheduled", "choreo.email", "(hard"):
        assert text in result.output, text


def test_the_metrics_read_at_80_columns(monkeypatch):
    import httpx
    from typer.testing import CliRunner

    from choreo.cli import app

    exposition = (
        'choreo_handler_duration_milliseconds_count{consumer="choreo.saga-coordinator",'
        'event_type="inventory.reservation_failed",service_name="saga-coordinator"} 8\n'
    )
    monkeypatch.setattr(httpx, "get", lambda url, timeout: httpx.Response(200, text=exposition))
    result = CliRunner().invoke(app, ["metrics"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    rows = [line.split("│") for line in result.output.splitlines() if line.startswith("│")]
    metric = "".join(row[1].strip() for row in rows)
    labels = "".join(row[2].strip() for row in rows)  # a label may fold over two lines
    assert metric == "choreo_handler_duration_milliseconds_count"
    assert "consumer=choreo.saga-coordinator" in labels
    assert "event_type=inventory.reservation_failed" in labels


def test_an_audit_trail_keeps_event_types_whole_and_does_not_repeat_them():
    rows = [
        {"occurred_at": "2026-12-05T08:58:12.857+00:00",
         "event_type": "payment.return_refund_declined", "producer": "payment",
         "summary": "payment.return_refund_declined: no_charge"},
        {"occurred_at": "2026-12-05T08:58:12.908+00:00", "event_type": "pickup.cancelled",
         "producer": "shipping", "summary": "pickup.cancelled"},
        {"occurred_at": "2026-12-05T07:47:28.755+00:00", "event_type": "order.placed",
         "producer": "cli", "summary": "1 item(s), total 25.00 [EUR], ship to DE"},
    ]  # fmt: skip
    lines = _render(history_table(rows)).splitlines()
    cells = [[c.strip() for c in line.split("│")[1:4]] for line in lines if "│" in line]
    assert cells == [
        ["08:58:12.857", "payment.return_refund_declined", "no_charge"],
        ["", "payment", ""],
        ["08:58:12.908", "pickup.cancelled", ""],
        ["", "shipping", ""],
        ["07:47:28.755", "order.placed", "1 item(s), total 25.00"],
        ["", "cli", "[EUR], ship to DE"],
    ]
    assert max(len(line) for line in lines) <= 80
