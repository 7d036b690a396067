"""One saga's page, drawn from a logged run of the coordinator's engine: the path through the
definition, the timeline's rows and the trace waterfall's rows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from projections.console import timeline, waterfall
from projections.console.flow import DETAIL_CHAR, PAD, layout
from projections.console.saga_page import path_details, path_states, taken_edges
from projections.sagas_model import fold_saga
from projections.traces import build_tree
from sagas.order import V1 as ORDER
from tests.unit.saga_coordinator.engine.test_order_equivalence import PATHS

from ..saga_log import LoggedRun


def _run(path: str, upto: int | None = None) -> LoggedRun:
    run = LoggedRun(ORDER, "ord-1")
    for action in PATHS[path][:upto]:
        if action[0] == "send":
            run.send(action[1](), action[2])
        else:
            run.wait(action[1])
    return run


def test_a_failed_shipment_is_drawn_through_its_compensations() -> None:
    run = _run("shipment failed")
    view = fold_saga(ORDER, "ord-1", run.log)
    states = path_states(view)
    assert states["inventory"] == states["payment"] == "done"
    assert states["shipping"] == "failed"
    assert states["approval"] == "skipped"  # a small order: approved by policy
    assert states["undo_payment"] == states["undo_inventory"] == "done"
    assert "done" not in states
    assert "crm" not in states
    taken = taken_edges(layout(ORDER), states)
    assert ("payment", "shipping") in taken
    assert ("shipping", "undo_shipping") not in taken
    assert ("payment", "undo_payment") in taken
    assert not any(target == "done" for _, target in taken)


def test_a_failed_steps_box_says_how_it_failed() -> None:
    view = fold_saga(ORDER, "ord-1", _run("shipment failed").log)
    flow = layout(ORDER)
    details = path_details(view, flow)
    shipping = next(s for s in view.steps if s.step == "shipping")
    assert details == {"shipping": f"✗ {shipping.detail or shipping.reason}"}
    cut = path_details(view, replace(flow, nodes=[replace(n, w=60) for n in flow.nodes]))
    assert cut["shipping"].endswith("…")
    assert len(cut["shipping"]) == int((60 - 2 * PAD) / DETAIL_CHAR)


def test_the_step_a_running_saga_waits_on_is_current() -> None:
    run = _run("shipment failed", upto=3)  # placed, reserved, approved: payment runs
    states = path_states(fold_saga(ORDER, "ord-1", run.log))
    assert [n for n, s in states.items() if s == "current"] == ["payment"]


def test_the_timeline_shows_the_refund_before_the_release() -> None:
    run = _run("shipment failed")
    view = fold_saga(ORDER, "ord-1", run.log)
    chart = timeline.layout(view, run.log, view.ended_at or run.log[-1].occurred_at)
    rows = {b.name: b for b in chart.bars}
    assert len(rows["events"].ticks) == len(run.log)
    refund = rows["undo: payment.refund"]
    release = rows["undo: inventory.release"]
    assert refund.kind == release.kind == "undo"
    assert refund.start is not None
    assert release.start is not None
    assert refund.start < release.start
    assert rows["shipping"].state == "failed"
    assert "shipment failed" in rows["shipping"].note
    assert rows["email"].w == 0  # not on this saga's path
    assert all(timeline.LABEL_W <= b.x + b.w <= chart.width for b in chart.bars if b.w)
    assert next(label for _, label in chart.axis) == "+0.00 s"


def _jaeger(spans: list[tuple[str, str | None, str, str, int, int]]) -> dict[str, Any]:
    return {
        "traceID": "a" * 32,
        "processes": {"p1": {"serviceName": "payment"}},
        "spans": [
            {
                "spanID": sid,
                "references": [{"refType": "CHILD_OF", "spanID": parent}] if parent else [],
                "processID": "p1",
                "operationName": name,
                "startTime": start,
                "duration": duration,
                # asyncpg's statements carry db.system (and are named by their first word).
                "tags": [{"key": "db.system", "value": "postgresql"}] if name.isupper() else [],
                "logs": [{"fields": [{"key": "event", "value": ev}]}] if ev else [],
            }
            for sid, parent, name, ev, start, duration in spans
        ],
    }


def test_the_waterfall_nests_spans_marks_compensations_and_leaves_out_statements() -> None:
    trace = build_tree(
        _jaeger(
            [
                ("r", None, "order.placed publish", "", 1_000, 9_000),
                ("b", "r", "handle payment.refund", "retry_scheduled", 6_000, 1_000),
                ("a", "r", "handle order.approved", "", 2_000, 2_000),
                ("c", "a", "INSERT", "", 2_500, 500),
                ("d", "a", "order.approved publish", "", 3_000, 500),
            ]
        ),
        [],
    )
    drawn = waterfall.layout(trace, ["payment.refund", "inventory.release"], None)
    assert [(r.name, r.depth) for r in drawn.rows] == [
        ("order.placed publish", 0),
        ("handle order.approved", 1),
        ("order.approved publish", 2),
        ("handle payment.refund", 1),
    ]
    assert [r.undo for r in drawn.rows] == [False, False, False, True]
    assert drawn.rows[0].left == 0
    assert drawn.rows[0].width == 100
    assert drawn.rows[3].left == 55.556
    assert drawn.rows[3].events == ["retry_scheduled"]
    assert drawn.total_ms == 9.0
    assert drawn.statements == 1


def test_a_traceparent_names_its_trace() -> None:
    assert waterfall.trace_id_of(f"00-{'ab' * 16}-{'cd' * 8}-01") == "ab" * 16
    assert waterfall.trace_id_of(None) is None
    assert waterfall.trace_id_of("garbage") is None
