"""The pure parts of `choreo bench peers`: the orders the peers get, figures, ratios, report."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from bench.peers.common import (
    AMPLE_STOCK,
    APPROVAL_THRESHOLD_MINOR,
    parcel_of,
    peer_order,
    seed_stock,
)
from bench.peers.load import LoadConfig
from bench.peers.report import (
    ProcessCost,
    SystemFigures,
    document,
    figures_from_orders,
    figures_table,
    parse_rates,
    parse_systems,
    ratio_table,
    ratios,
)
from choreo.mix import DEFAULT_MIX, EXPECTED, assign_scenarios, parse_mix
from contracts.samples import SCENARIOS, scenario_order


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_peer_order_carries_what_the_scenario_order_says(scenario):
    placed = scenario_order(scenario)
    order = peer_order(scenario, "ord-1")
    assert order.total_minor == placed.total_minor
    assert order.token == placed.payment_token
    assert order.country_code == placed.shipping_address.country_code
    assert order.email == placed.customer_email
    assert sum(order.quantities) == sum(i.quantity for i in placed.items)
    assert order.needs_approval == (placed.total_minor >= APPROVAL_THRESHOLD_MINOR)
    address, items = parcel_of(order)
    assert address.country_code == placed.shipping_address.country_code
    assert [(i.sku, i.quantity) for i in items] == list(
        zip(order.skus, order.quantities, strict=True)
    )


def test_the_large_samples_wait_for_approval():
    # out_of_stock's total is large too, but its reservation fails before the gate.
    waiting = {name for name in SCENARIOS if peer_order(name, "o").needs_approval}
    assert waiting == {"large", "out_of_stock"}


def test_the_peers_get_the_same_mix_as_choreo_bench():
    # Both draw their scenarios with assign_scenarios: same counts, same order.
    mix = parse_mix(DEFAULT_MIX)
    scenarios = assign_scenarios(mix, 200)
    assert {s: scenarios.count(s) for s in mix} == {
        "happy": 140,
        "large": 20,
        "declined": 20,
        "unshippable": 20,
    }


def test_seeded_stock_is_ample_except_the_scarce_vase():
    stock = seed_stock({"SKU-RED-MUG": 1000, "SKU-RARE-VASE": 5})
    assert stock == {"SKU-RED-MUG": AMPLE_STOCK, "SKU-RARE-VASE": 5}


def test_load_config_round_trips_through_json():
    config = LoadConfig(
        "dbos", 10, 2.5, {"happy": 1}, 5, 60.0, "postgresql://x", "s", "/r", warm_up=7
    )
    assert LoadConfig.from_json(config.to_json()) == config


def test_figures_from_orders_window_latency_outcomes_and_unexpected():
    orders = [
        ("happy", 0.0, 0.5, "completed"),
        ("declined", 0.1, 0.4, "cancelled:payment_declined"),
        ("unshippable", 0.2, 2.0, "completed"),  # unexpected
        ("happy", 0.3, None, None),  # never ended
    ]
    figures = figures_from_orders("dbos", None, orders, publish_s=0.3)
    assert figures.placed == 4
    assert figures.finished == 3
    assert figures.window_s == pytest.approx(2.0)
    assert figures.orders_per_second == pytest.approx(1.5)
    assert figures.latency.count == 3
    assert figures.latency.max_ms == pytest.approx(1800)
    assert figures.outcomes == {
        "completed": 2,
        "cancelled:payment_declined": 1,
        "unfinished": 1,
    }
    assert figures.unexpected == {"unshippable → completed": 1, "happy → unfinished": 1}
    assert EXPECTED["declined"] == "cancelled:payment_declined"


def test_no_orders_give_no_rate_rather_than_a_division_by_zero():
    figures = figures_from_orders("temporal", 5.0, [])
    assert math.isnan(figures.orders_per_second)
    assert math.isnan(figures.cpu_ms_per_order)


def _figures(system: str, per_s: float, p99_ms: float, cpu_s: float, rss: float) -> SystemFigures:
    figures = SystemFigures(
        system=system, rate=None, placed=100, finished=100, window_s=100 / per_s
    )
    figures.latency = figures_from_orders(
        system, None, [("happy", 0.0, p99_ms / 1000, "x")]
    ).latency
    figures.processes = [
        ProcessCost("app", "app", cpu_s / 2, rss),
        ProcessCost("postgres", "postgres", cpu_s / 2, 10_000.0),
    ]
    return figures


def test_cpu_counts_postgres_but_rss_leaves_the_shared_postgres_out():
    figures = _figures("choreo", 10, 100, 2.0, 300)
    assert figures.cpu_ms_per_order == pytest.approx(20)
    assert figures.peak_rss_mb == 300


def test_ratios_are_choreo_over_the_peer_with_the_better_direction():
    choreo = _figures("choreo", 100, 100, 1.0, 800)
    peer = _figures("dbos", 50, 400, 2.0, 200)
    by_name = {r.what: r for r in ratios(choreo, peer)}
    assert by_name["orders/s"].ratio == pytest.approx(2.0)
    assert by_name["orders/s"].choreo_ahead is True
    assert by_name["latency p99"].ratio == pytest.approx(0.25)
    assert by_name["latency p99"].choreo_ahead is True
    assert by_name["CPU per order"].ratio == pytest.approx(0.5)
    assert by_name["peak RSS"].ratio == pytest.approx(4.0)
    assert by_name["peak RSS"].choreo_ahead is False


def test_a_ratio_to_a_failed_peer_is_unknown():
    choreo = _figures("choreo", 100, 100, 1.0, 800)
    failed = SystemFigures(system="temporal", rate=None)
    # Regression: a run that never started measured no memory; 0 MB made Choreo look worse.
    for ratio in ratios(choreo, failed):
        assert math.isnan(ratio.ratio), ratio.what
        assert ratio.choreo_ahead is None
        assert ratio.to_json()["ratio"] is None


def test_document_compares_choreo_with_each_peer_at_each_rate():
    runs = [
        _figures("choreo", 100, 100, 1.0, 800),
        _figures("dbos", 50, 200, 1.0, 200),
        _figures("temporal", 10, 900, 3.0, 400),
    ]
    doc = document(runs, {"orders": 100})
    assert [c["peer"] for c in doc["choreo_vs_peers"]] == ["dbos", "temporal"]
    first = doc["choreo_vs_peers"][0]["ratios"][0]
    assert first == {
        "what": "orders/s",
        "unit": "orders/s",
        "choreo": 100.0,
        "peer": 50.0,
        "ratio": 2.0,
        "better": "higher",
        "choreo_ahead": True,
    }
    assert [r["system"] for r in doc["runs"]] == ["choreo", "dbos", "temporal"]
    assert doc["runs"][0]["rate"] == "burst"


def test_document_without_choreo_has_no_comparison():
    assert document([_figures("dbos", 50, 200, 1.0, 200)], {})["choreo_vs_peers"] == []


def test_tables_render_each_system_and_each_ratio():
    runs = [_figures("choreo", 100, 100, 1.0, 800), _figures("dbos", 50, 200, 1.0, 200)]
    runs[0].invariants = {"ok": True}
    console = Console(width=200, record=True)
    console.print(figures_table(runs, 100))
    console.print(ratio_table(runs[0], runs[1:]))
    text = console.export_text()
    assert "choreo" in text
    assert "dbos" in text
    assert "2.00x ✓" in text  # orders/s
    assert "4.00x ✗" in text  # peak RSS


def test_parse_systems_keeps_order_and_refuses_unknown_names():
    assert parse_systems("temporal, choreo,temporal") == ("temporal", "choreo")
    with pytest.raises(ValueError, match="unknown system"):
        parse_systems("choreo,kafka-streams")
    with pytest.raises(ValueError, match="unknown system"):
        parse_systems(" , ")


def test_parse_rates_zero_is_a_burst_and_the_default():
    assert parse_rates(None) == (None,)
    assert parse_rates([0, 20, 20]) == (None, 20)
    with pytest.raises(ValueError, match="negative"):
        parse_rates([-1])


def test_choreo_notes_reach_the_json_and_the_printed_report(monkeypatch, tmp_path):
    import choreo.cli  # noqa: F401  (the entry point: it imports the bench's CLI, which is circular first)
    from bench.peers import cli, runner
    from bench.result import SagaConfig, SagaResult

    warming = (
        "kafka's JIT compiler used 3.1 of its 5.9 CPU seconds in the run: it was still warming"
        " up (run again, or with a longer --warm-up)"
    )
    result = SagaResult(SagaConfig(orders=1), prefix="benchx.", log_dir=tmp_path, placed=1)
    result.notes.append(warming)

    async def invariants_hold(*_: object) -> dict[str, object]:
        return {"ok": True}

    monkeypatch.setattr(runner, "check_invariants", invariants_hold)
    figures = runner.choreo_figures(result, 20.0, tracing=False)
    assert figures.notes == [warming]
    assert figures.to_json()["notes"] == [warming]
    console = Console(width=400, record=True)
    monkeypatch.setattr(cli, "out", console)
    cli._print([figures], 1)
    assert f"note (choreo, rate 20.0): {warming}" in console.export_text()
